//! One test per target: `CAPSTAN_FUZZ_CASES` generated inputs each (2,000 by default).

use capstan_fuzz::driver::run;
use capstan_fuzz::targets::*;

#[test]
fn manifests_parse_or_fail_cleanly() {
    run("manifests", manifests_input(), manifests);
}

#[test]
fn kustomizations_edit_or_fail_cleanly() {
    run("kustomization", kustomization_input(), kustomization);
}

#[test]
fn helm_values_edit_or_fail_cleanly() {
    run("helm_values", helm_values_input(), helm_values);
}

#[test]
fn webhooks_verify_and_parse_or_fail_cleanly() {
    run("webhook", webhook_input(), webhook);
}

#[test]
fn label_selectors_parse_or_fail_cleanly() {
    run("label_selector", label_selector_input(), label_selector);
}

#[test]
fn field_selectors_parse_or_fail_cleanly() {
    run("field_selector", field_selector_input(), field_selector);
}

#[test]
fn request_bodies_decode_or_fail_cleanly() {
    run("request_body", request_body_input(), request_body);
}

#[test]
fn request_parameters_parse_or_fail_cleanly() {
    run("request_query", request_query_input(), request_query);
}

#[test]
fn patches_apply_or_fail_cleanly() {
    run("patch", patch_input(), patch);
}

#[test]
fn applies_and_managed_fields_merge_or_fail_cleanly() {
    run("managed_fields", managed_fields_input(), managed_fields);
}
