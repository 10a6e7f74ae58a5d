//! Chart archives on disk: stored under their sha256, extracted safely beside.
//!
//! ```text
//! <cache>/archives/<hex>.tgz        the archive as downloaded
//! <cache>/charts/<hex>/<chart>/     its extraction (renamed into place when complete)
//! ```
//!
//! A `.tgz` is untrusted input, so extraction reads it entry by entry and writes only
//! what it checked: a directory or a regular file, whose path is relative, has no `..`
//! and lies under the one top-level directory every entry shares. Links (symbolic or
//! hard) are refused outright — Helm itself reads a link entry as an empty file, so no
//! chart needs one — and so are devices, FIFOs and sparse files. File modes from the
//! archive are not applied (no executables, no setuid). The decompressed stream is
//! bounded in bytes and the archive in entries, so a small download cannot fill the disk.

use std::cell::Cell;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ChartCacheOptions, ChartError, ChartId, FetchedChart};

/// An extracted chart in the cache.
#[derive(Debug)]
pub(super) struct Extracted {
    /// The chart's name from `Chart.yaml`.
    name: String,
    /// The chart directory.
    dir: PathBuf,
}

impl Extracted {
    pub(super) fn into_fetched(self, version: &str, hex: &str) -> FetchedChart {
        FetchedChart {
            name: self.name,
            version: version.to_string(),
            digest: format!("sha256:{hex}"),
            dir: self.dir,
        }
    }
}

/// An archive stored and extracted.
#[derive(Debug)]
pub(super) struct Stored {
    /// Its sha256, hex.
    pub(super) hex: String,
    /// Its extraction.
    pub(super) chart: Extracted,
}

/// The chart of digest `hex` if the cache has it: its extraction, or its archive
/// (checked again, then extracted).
pub(super) fn cached(
    root: &Path,
    hex: &str,
    options: &ChartCacheOptions,
    chart: &ChartId,
) -> Result<Option<Extracted>, ChartError> {
    if let Some(found) = extraction(root, hex, chart)? {
        return Ok(Some(found));
    }
    let Ok(bytes) = fs::read(archive_path(root, hex)) else {
        return Ok(None);
    };
    if sha256_hex(&bytes) != hex {
        // A damaged archive: download it again.
        let _ = fs::remove_file(archive_path(root, hex));
        return Ok(None);
    }
    extract_into_cache(root, hex, &bytes, options, chart).map(Some)
}

/// Check `bytes` against `expected` (sha256 hex, when the repository gives one), keep
/// the archive under its digest and extract it.
pub(super) fn store(
    root: &Path,
    bytes: &[u8],
    expected: Option<&str>,
    options: &ChartCacheOptions,
    chart: &ChartId,
) -> Result<Stored, ChartError> {
    let hex = sha256_hex(bytes);
    if let Some(expected) = expected.filter(|e| *e != hex) {
        return Err(ChartError::DigestMismatch {
            chart: chart.clone(),
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{hex}"),
        });
    }
    if let Some(found) = extraction(root, &hex, chart)? {
        return Ok(Stored { hex, chart: found });
    }
    let extracted = extract_into_cache(root, &hex, bytes, options, chart)?;
    write_archive(root, &hex, bytes, chart)?;
    Ok(Stored {
        hex,
        chart: extracted,
    })
}

fn archive_path(root: &Path, hex: &str) -> PathBuf {
    root.join("archives").join(format!("{hex}.tgz"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn cache_error(chart: &ChartId, path: &Path) -> impl Fn(io::Error) -> ChartError {
    let chart = chart.clone();
    let path = path.display().to_string();
    move |source| ChartError::Cache {
        chart: chart.clone(),
        path: path.clone(),
        source,
    }
}

/// The finished extraction of `hex`, if there is one: its one top directory.
fn extraction(root: &Path, hex: &str, chart: &ChartId) -> Result<Option<Extracted>, ChartError> {
    let dir = root.join("charts").join(hex);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(None);
    };
    let top = entries
        .flatten()
        .find(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path());
    match top {
        Some(top) => chart_yaml(&top, chart).map(Some),
        None => Err(ChartError::NoChartYaml {
            chart: chart.clone(),
        }),
    }
}

/// Write the archive atomically (a temporary file renamed into place).
fn write_archive(root: &Path, hex: &str, bytes: &[u8], chart: &ChartId) -> Result<(), ChartError> {
    let dir = root.join("archives");
    fs::create_dir_all(&dir).map_err(cache_error(chart, &dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(cache_error(chart, &dir))?;
    tmp.write_all(bytes).map_err(cache_error(chart, &dir))?;
    let path = archive_path(root, hex);
    tmp.persist(&path)
        .map_err(|e| cache_error(chart, &path)(e.error))?;
    Ok(())
}

/// Extract into a temporary directory, then rename it to `charts/<hex>` (another
/// process that got there first wins; its extraction is the same).
fn extract_into_cache(
    root: &Path,
    hex: &str,
    bytes: &[u8],
    options: &ChartCacheOptions,
    chart: &ChartId,
) -> Result<Extracted, ChartError> {
    let charts = root.join("charts");
    fs::create_dir_all(&charts).map_err(cache_error(chart, &charts))?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(&charts)
        .map_err(cache_error(chart, &charts))?;
    let top = extract(bytes, tmp.path(), options, chart)?;
    chart_yaml(&tmp.path().join(&top), chart)?;
    let dest = charts.join(hex);
    if let Err(e) = fs::rename(tmp.path(), &dest)
        && !dest.is_dir()
    {
        return Err(cache_error(chart, &dest)(e));
    }
    chart_yaml(&dest.join(&top), chart)
}

/// The chart at `dir`: its `Chart.yaml` must be there and name it.
fn chart_yaml(dir: &Path, chart: &ChartId) -> Result<Extracted, ChartError> {
    #[derive(Deserialize)]
    struct ChartYaml {
        name: String,
    }
    let Ok(text) = fs::read_to_string(dir.join("Chart.yaml")) else {
        return Err(ChartError::NoChartYaml {
            chart: chart.clone(),
        });
    };
    let parsed: ChartYaml =
        serde_saphyr::from_str(&text).map_err(|source| ChartError::ChartYaml {
            chart: chart.clone(),
            source: Box::new(source),
        })?;
    Ok(Extracted {
        name: parsed.name,
        dir: dir.to_path_buf(),
    })
}

/// What to do with an entry of a type.
enum Kind {
    Directory,
    File,
    /// Metadata for the whole archive (a pax global header): nothing to write.
    Metadata,
}

fn kind(t: tar::EntryType) -> Result<Kind, &'static str> {
    match t {
        tar::EntryType::Regular | tar::EntryType::Continuous => Ok(Kind::File),
        tar::EntryType::Directory => Ok(Kind::Directory),
        tar::EntryType::XGlobalHeader => Ok(Kind::Metadata),
        tar::EntryType::Symlink | tar::EntryType::Link => Err("is a link"),
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            Err("is a device or FIFO")
        }
        _ => Err("is not a regular file or directory"),
    }
}

/// The components of an entry's path, `None` when it is absolute or has `..`.
fn components(name: &str) -> Option<Vec<&str>> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts)
}

/// Extract `bytes` (a `.tgz`) into the empty directory `dest`; the top directory's name.
pub(super) fn extract(
    bytes: &[u8],
    dest: &Path,
    options: &ChartCacheOptions,
    chart: &ChartId,
) -> Result<String, ChartError> {
    let exceeded = Rc::new(Cell::new(false));
    let reader = Limited {
        inner: flate2::read::MultiGzDecoder::new(bytes),
        left: options.max_extracted_bytes,
        exceeded: exceeded.clone(),
    };
    let read_error = |source: io::Error| match exceeded.get() {
        true => ChartError::ArchiveTooLarge {
            chart: chart.clone(),
            what: "bytes",
            limit: options.max_extracted_bytes,
        },
        false => ChartError::Archive {
            chart: chart.clone(),
            source,
        },
    };
    let mut archive = tar::Archive::new(reader);
    let mut top: Option<String> = None;
    for (count, entry) in archive.entries().map_err(read_error)?.enumerate() {
        if count >= options.max_entries {
            return Err(ChartError::ArchiveTooLarge {
                chart: chart.clone(),
                what: "entries",
                limit: options.max_entries as u64,
            });
        }
        let mut entry = entry.map_err(read_error)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason| ChartError::UnsafeEntry {
            chart: chart.clone(),
            entry: name.clone(),
            reason,
        };
        let kind = kind(entry.header().entry_type()).map_err(refuse)?;
        if matches!(kind, Kind::Metadata) {
            continue;
        }
        let parts =
            components(&name).ok_or_else(|| refuse("leaves the chart (absolute, or ..)"))?;
        let Some(first) = parts.first() else {
            continue;
        };
        match &top {
            None => top = Some(first.to_string()),
            Some(t) if t != first => return Err(refuse("is outside the chart's top directory")),
            Some(_) => {}
        }
        let path: PathBuf = parts.iter().fold(dest.to_path_buf(), |p, c| p.join(c));
        match kind {
            Kind::Directory => fs::create_dir_all(&path).map_err(cache_error(chart, &path))?,
            Kind::File => write_entry(&mut entry, &path, chart, &read_error)?,
            Kind::Metadata => {}
        }
    }
    top.ok_or_else(|| ChartError::NoChartYaml {
        chart: chart.clone(),
    })
}

/// Copy one file entry to `path`.
fn write_entry(
    entry: &mut impl Read,
    path: &Path,
    chart: &ChartId,
    read_error: &dyn Fn(io::Error) -> ChartError,
) -> Result<(), ChartError> {
    let write_error = cache_error(chart, path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(&write_error)?;
    }
    let mut file = fs::File::create(path).map_err(&write_error)?;
    let mut buf = [0u8; 64 << 10];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        file.write_all(&buf[..n]).map_err(&write_error)?;
    }
}

/// A reader that fails (and says so in `exceeded`) past `left` bytes.
struct Limited<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded.set(true);
                    Err(io::Error::other("the archive decompresses past its bound"))
                }
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ChartId {
        ChartId {
            repo: "https://charts.example.com".into(),
            chart: "app".into(),
            version: "1.0.0".into(),
        }
    }

    /// A `.tgz` of `(path as written, type, content, link target)` entries, headers
    /// written raw so that unsafe paths get in.
    fn tgz(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (path, t, data, link) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*t);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    const CHART: &[u8] = b"apiVersion: v2\nname: app\nversion: 1.0.0\n";

    fn extract_err(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> ChartError {
        let dest = tempfile::tempdir().unwrap();
        let bytes = tgz(entries);
        let e = extract(&bytes, dest.path(), &ChartCacheOptions::default(), &id()).unwrap_err();
        assert!(
            !dest.path().parent().unwrap().join("evil").exists(),
            "nothing is written outside"
        );
        e
    }

    #[test]
    fn a_chart_extracts_under_its_top_directory() {
        let dest = tempfile::tempdir().unwrap();
        let bytes = tgz(&[
            ("app/", tar::EntryType::Directory, b"", ""),
            ("app/Chart.yaml", tar::EntryType::Regular, CHART, ""),
            ("./app/templates/cm.yaml", tar::EntryType::Regular, b"x", ""),
        ]);
        let top = extract(&bytes, dest.path(), &ChartCacheOptions::default(), &id()).unwrap();
        assert_eq!(top, "app");
        assert_eq!(
            fs::read(dest.path().join("app/templates/cm.yaml")).unwrap(),
            b"x"
        );
        assert_eq!(
            chart_yaml(&dest.path().join("app"), &id()).unwrap().name,
            "app"
        );
    }

    #[test]
    fn paths_that_leave_the_chart_are_refused_naming_the_entry() {
        let reg = tar::EntryType::Regular;
        for (path, expected) in [
            ("app/../../evil", "\"app/../../evil\" leaves the chart"),
            ("../evil", "\"../evil\" leaves the chart"),
            ("/tmp/evil", "\"/tmp/evil\" leaves the chart"),
            (
                "other/evil",
                "\"other/evil\" is outside the chart's top directory",
            ),
        ] {
            let e = extract_err(&[("app/Chart.yaml", reg, CHART, ""), (path, reg, b"x", "")]);
            assert!(matches!(e, ChartError::UnsafeEntry { .. }), "{path}: {e}");
            assert!(e.to_string().contains(expected), "{path}: {e}");
            assert!(
                e.to_string()
                    .starts_with("chart app 1.0.0 from https://charts.example.com")
            );
        }
    }

    #[test]
    fn links_and_devices_are_refused() {
        let reg = tar::EntryType::Regular;
        for (t, reason) in [
            (tar::EntryType::Symlink, "is a link"),
            (tar::EntryType::Link, "is a link"),
            (tar::EntryType::Char, "is a device or FIFO"),
            (tar::EntryType::Fifo, "is a device or FIFO"),
        ] {
            let e = extract_err(&[
                ("app/Chart.yaml", reg, CHART, ""),
                ("app/x", t, b"", "/etc/passwd"),
            ]);
            assert!(e.to_string().contains(reason), "{e}");
        }
    }

    #[test]
    fn archives_past_their_bounds_or_broken_are_refused() {
        let reg = tar::EntryType::Regular;
        let big = vec![0u8; 1 << 20];
        let bytes = tgz(&[
            ("app/Chart.yaml", reg, CHART, ""),
            ("app/big", reg, &big, ""),
        ]);
        let small = ChartCacheOptions {
            max_extracted_bytes: 64 << 10,
            ..Default::default()
        };
        let dest = tempfile::tempdir().unwrap();
        let e = extract(&bytes, dest.path(), &small, &id()).unwrap_err();
        assert!(
            e.to_string().ends_with("holds more than 65536 bytes"),
            "{e}"
        );
        let few = ChartCacheOptions {
            max_entries: 1,
            ..Default::default()
        };
        let e = extract(&bytes, tempfile::tempdir().unwrap().path(), &few, &id()).unwrap_err();
        assert!(e.to_string().ends_with("holds more than 1 entries"), "{e}");
        let e = extract(b"not gzip", dest.path(), &small, &id()).unwrap_err();
        assert!(matches!(e, ChartError::Archive { .. }), "{e}");
    }

    #[test]
    fn stored_archives_are_found_by_digest_and_a_wrong_digest_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let bytes = tgz(&[("app/Chart.yaml", tar::EntryType::Regular, CHART, "")]);
        let o = ChartCacheOptions::default();
        let e = store(root.path(), &bytes, Some(&"0".repeat(64)), &o, &id()).unwrap_err();
        assert!(matches!(e, ChartError::DigestMismatch { .. }), "{e}");
        assert!(!root.path().join("archives").exists(), "nothing stored");
        let stored = store(root.path(), &bytes, None, &o, &id()).unwrap();
        assert_eq!(stored.hex, sha256_hex(&bytes));
        assert!(archive_path(root.path(), &stored.hex).is_file());
        let again = cached(root.path(), &stored.hex, &o, &id())
            .unwrap()
            .unwrap();
        assert_eq!(again.dir, stored.chart.dir);
        fs::remove_dir_all(root.path().join("charts")).unwrap();
        let from_archive = cached(root.path(), &stored.hex, &o, &id())
            .unwrap()
            .unwrap();
        assert_eq!(from_archive.name, "app");
        assert!(
            cached(root.path(), &"1".repeat(64), &o, &id())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_archive_without_chart_yaml_names_the_chart() {
        let root = tempfile::tempdir().unwrap();
        let bytes = tgz(&[("app/values.yaml", tar::EntryType::Regular, b"a: 1", "")]);
        let e = store(
            root.path(),
            &bytes,
            None,
            &ChartCacheOptions::default(),
            &id(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "chart app 1.0.0 from https://charts.example.com: the archive has no Chart.yaml at its top"
        );
    }
}
