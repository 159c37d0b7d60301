//! The dashboard's files, embedded in the binary so it works with no network and no install.

/// One embedded file.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    /// Path relative to the dashboard directory.
    pub path: &'static str,
    /// MIME type.
    pub content_type: &'static str,
    /// Contents.
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset { path: $path, content_type: $type, bytes: include_bytes!(concat!("../dashboard/", $path)) }
    };
}

/// Every file of the dashboard.
pub const ASSETS: &[Asset] = &[
    asset!("coordinator_performance.html", "text/html; charset=utf-8"),
    asset!("dashboard.js", "text/javascript; charset=utf-8"),
    asset!("dashboard.css", "text/css; charset=utf-8"),
    asset!("vendor/chart.umd.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/LICENSE.chartjs.md", "text/markdown; charset=utf-8"),
];

/// The page served at `/`.
pub const INDEX: &str = "coordinator_performance.html";

/// The asset at `path` (relative, without a leading slash), if any. Only exact names match,
/// so no request can reach outside the embedded set.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// Writes every asset under `dir`.
///
/// # Errors
/// Any I/O error.
pub fn write_to(dir: &std::path::Path) -> std::io::Result<()> {
    for asset in ASSETS {
        let path = dir.join(asset.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::sink::write_atomic(&path, |w| w.write_all(asset.bytes))?;
    }
    Ok(())
}
