//! `xgserve models list`: the bundles in a folder, like `bentoml models list`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::bundle::Manifest;

/// Prints one line per bundle (a subfolder with a `bundle.json`), sorted by name.
pub fn list(dir: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    let mut rows = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let manifest_path = path.join("bundle.json");
        if !manifest_path.is_file() {
            continue;
        }
        let bytes =
            std::fs::read(&manifest_path).with_context(|| format!("{}: cannot read", manifest_path.display()))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a valid bundle manifest", manifest_path.display()))?;
        let mut size = bytes.len() as u64;
        for name in manifest.files.keys() {
            size += std::fs::metadata(path.join(name)).map(|m| m.len()).unwrap_or(0);
        }
        let library = manifest
            .libraries
            .get("xgboost")
            .map_or(String::new(), |v| format!("xgboost {v}"));
        let created = manifest.created.replace('T', " ").trim_end_matches('Z').to_owned();
        rows.push([
            format!("{}:{}", manifest.name, manifest.version),
            library,
            human_size(size),
            created,
        ]);
    }
    rows.sort();
    let header = ["Tag", "Module", "Size", "Creation Time"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        writeln!(out, " {}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// Sizes as BentoML prints them: `530.01 KiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::human_size(512), "512 B");
        assert_eq!(super::human_size(543_499), "530.76 KiB");
        assert_eq!(super::human_size(3 * 1024 * 1024), "3.00 MiB");
    }
}
