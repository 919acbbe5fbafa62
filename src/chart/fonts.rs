//! The fonts charts are drawn with: read from the system's font files (Debian's
//! `fonts-dejavu-core`; for Chinese wording `fonts-wqy-microhei` or `fonts-noto-cjk`), not
//! built into the binary, so the package stays small and the distribution keeps them
//! patched.
//!
//! A font is read once per process, the first time a chart is drawn in its language, and
//! kept for the life of the process (plotters' rasteriser wants `'static` bytes): a
//! daemon that never draws a chart never reads one.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

use super::ChartError;
use crate::render::Lang;

/// Where Debian puts the fonts, tried in order: (regular, bold).
const LATIN: &[(&str, &str)] = &[(
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
)];
/// CJK fonts carry Latin glyphs too: one family for the whole chart.
const CJK: &[(&str, &str)] = &[
    (
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    ),
    (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    ),
];

/// Whether a font for `lang` is installed, without reading it (a channel checks at start,
/// so a missing package is said once, not with every message).
pub fn available(lang: Lang) -> Result<(), ChartError> {
    let (files, package) = files(lang);
    if files
        .iter()
        .any(|(regular, _)| std::path::Path::new(regular).is_file())
    {
        return Ok(());
    }
    Err(ChartError::NoFont {
        tried: files.iter().map(|(r, _)| r.to_string()).collect(),
        package: package.to_string(),
    })
}

fn files(lang: Lang) -> (&'static [(&'static str, &'static str)], &'static str) {
    match lang {
        Lang::En => (LATIN, "fonts-dejavu-core"),
        Lang::Zh => (CJK, "fonts-wqy-microhei (or fonts-noto-cjk)"),
    }
}

/// The family name registered for `lang`, after registering it if this is the first
/// chart in that language.
pub fn family(lang: Lang) -> Result<&'static str, ChartError> {
    static EN: OnceLock<Result<(), ChartError>> = OnceLock::new();
    static ZH: OnceLock<Result<(), ChartError>> = OnceLock::new();
    let (name, cell) = match lang {
        Lang::En => ("powa-sentinel-latin", &EN),
        Lang::Zh => ("powa-sentinel-cjk", &ZH),
    };
    let (files, package) = files(lang);
    cell.get_or_init(|| load(name, files, package))
        .clone()
        .map(|()| name)
}

fn load(name: &str, files: &[(&str, &str)], package: &str) -> Result<(), ChartError> {
    for (regular, bold) in files {
        let Ok(r) = std::fs::read(regular) else {
            continue;
        };
        let b = std::fs::read(bold).ok();
        let r: &'static [u8] = Box::leak(r.into_boxed_slice());
        register_font(name, FontStyle::Normal, r).map_err(|_| ChartError::Font {
            path: regular.to_string(),
        })?;
        if let Some(b) = b {
            let b: &'static [u8] = Box::leak(b.into_boxed_slice());
            // A bold face that does not load leaves the regular one for titles.
            let _ = register_font(name, FontStyle::Bold, b);
        }
        return Ok(());
    }
    Err(ChartError::NoFont {
        tried: files.iter().map(|(r, _)| r.to_string()).collect(),
        package: package.to_string(),
    })
}
