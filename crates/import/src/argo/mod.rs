//! Argo CD's kinds (`argoproj.io`): `Application` and `ApplicationSet` become Capstan
//! Applications; an `AppProject` has no Capstan equivalent yet and is named in a
//! warning.

pub(crate) mod application;
pub(crate) mod appset;
pub(crate) mod inspect;
pub(crate) mod template;
