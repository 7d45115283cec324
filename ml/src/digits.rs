//! The bundled handwritten-digits data set (`ml/data/README.md`): 1,797 8×8
//! images, pixel counts 0–16, labels 0–9. Embedded in the binary and checked
//! against its SHA-256 when loaded.
//!
//! The held-out split is fixed: every fifth image (index ≡ 0 mod 5), 360 images;
//! the other 1,437 train.

use std::io::Read;

use sha2::{Digest as _, Sha256};

/// Pixels per image.
pub const PIXELS: usize = 64;
/// Classes.
pub const CLASSES: usize = 10;

const DATA: &[u8] = include_bytes!("../data/digits.csv.gz");
/// SHA-256 of `ml/data/digits.csv.gz`.
pub const DATA_SHA256: &str = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22";
/// Largest decompressed size accepted.
const TEXT_BYTES_MAX: u64 = 4 << 20;

/// One image: pixels scaled to 0..=1, row by row.
pub type Image = [f32; PIXELS];

/// The data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Digits {
    /// Images.
    pub images: Vec<Image>,
    /// Their labels.
    pub labels: Vec<u8>,
}

/// Why the data could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The bytes are not the bundled file.
    #[error("the digits data's SHA-256 is {0}, not the bundled file's")]
    Checksum(String),
    /// Not gzip, or too large.
    #[error("cannot decompress the digits data: {0}")]
    Gzip(String),
    /// A line that is not 64 pixels and a label.
    #[error("digits data line {line}: {why}")]
    Line {
        /// 1-based.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

impl Digits {
    /// The bundled data set.
    pub fn bundled() -> Result<Digits, DataError> {
        Self::from_gzip(DATA, Some(DATA_SHA256))
    }

    /// Parses a gzip-compressed CSV of 64 pixels (0–16) and a label (0–9) per
    /// line, checking its SHA-256 if `sha256` is given.
    pub fn from_gzip(bytes: &[u8], sha256: Option<&str>) -> Result<Digits, DataError> {
        if let Some(expected) = sha256 {
            let got = crate::hex(&Sha256::digest(bytes));
            if got != expected {
                return Err(DataError::Checksum(got));
            }
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .take(TEXT_BYTES_MAX)
            .read_to_string(&mut text)
            .map_err(|e| DataError::Gzip(e.to_string()))?;
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad = |why: String| DataError::Line { line: i + 1, why };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != PIXELS + 1 {
                return Err(bad(format!("{} fields, not {}", fields.len(), PIXELS + 1)));
            }
            let mut image = [0f32; PIXELS];
            for (p, f) in image.iter_mut().zip(&fields[..PIXELS]) {
                let v: f32 = f.parse().map_err(|_| bad(format!("pixel `{f}`")))?;
                if !(0.0..=16.0).contains(&v) {
                    return Err(bad(format!("pixel {v} outside 0..=16")));
                }
                *p = v / 16.0;
            }
            let label: f32 = fields[PIXELS]
                .parse()
                .map_err(|_| bad(format!("label `{}`", fields[PIXELS])))?;
            if !(0.0..=9.0).contains(&label) || label.fract() != 0.0 {
                return Err(bad(format!("label {label}")));
            }
            images.push(image);
            labels.push(label as u8);
        }
        Ok(Digits { images, labels })
    }

    /// Indices of the training images.
    pub fn train_indices(&self) -> Vec<usize> {
        (0..self.images.len()).filter(|i| i % 5 != 0).collect()
    }

    /// Indices of the held-out images.
    pub fn test_indices(&self) -> Vec<usize> {
        (0..self.images.len()).filter(|i| i % 5 == 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn the_bundled_set_loads_whole() {
        let d = Digits::bundled().unwrap();
        assert_eq!(d.images.len(), 1_797);
        assert_eq!(d.labels.len(), 1_797);
        assert_eq!(d.test_indices().len(), 360);
        assert_eq!(d.train_indices().len(), 1_437);
        for c in 0..10u8 {
            assert!(d.labels.iter().filter(|l| **l == c).count() > 150);
        }
        assert!(d.images.iter().flatten().all(|p| (0.0..=1.0).contains(p)));
    }

    #[test]
    fn bad_data_is_a_clear_error() {
        let row = |label: &str| format!("{}{label}\n", "1,".repeat(PIXELS));
        assert!(Digits::from_gzip(&gzip(&row("3")), None).is_ok());
        assert!(matches!(
            Digits::from_gzip(&gzip(&row("12")), None),
            Err(DataError::Line { line: 1, .. })
        ));
        assert!(matches!(
            Digits::from_gzip(&gzip("1,2,3\n"), None),
            Err(DataError::Line { .. })
        ));
        assert!(matches!(
            Digits::from_gzip(&gzip(&row("x")), None),
            Err(DataError::Line { .. })
        ));
        assert!(matches!(
            Digits::from_gzip(b"not gzip", None),
            Err(DataError::Gzip(_))
        ));
        assert!(matches!(
            Digits::from_gzip(&gzip(&row("3")), Some(DATA_SHA256)),
            Err(DataError::Checksum(_))
        ));
    }
}
