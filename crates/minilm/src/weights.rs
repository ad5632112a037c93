//! `model.safetensors`, read one tensor at a time.
//!
//! Reading tensor by tensor (instead of the whole file, or a memory map) keeps the load's peak
//! memory near the model's own size, with no `unsafe`: only the header is parsed up front, and
//! each tensor's bytes go straight from the file into the tensor's storage.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;

use crate::Error;

/// The largest header accepted; the real one is about 20 KiB.
const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// One tensor's entry in the header.
#[derive(Debug, Clone, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// An open safetensors file whose header has been read.
pub(crate) struct Weights {
    path: PathBuf,
    file: File,
    /// Where the data section starts.
    data_start: u64,
    /// The data section's length.
    data_len: u64,
    entries: HashMap<String, Entry>,
}

impl Weights {
    /// Opens `path` and reads its header.
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes).map_err(io)?;
        let header_len = u64::from_le_bytes(len_bytes);
        let bad = |reason: String| Error::Weights {
            path: path.to_owned(),
            reason,
        };
        if header_len > MAX_HEADER_BYTES || header_len + 8 > file_len {
            return Err(bad(format!(
                "header length {header_len} does not fit a {file_len}-byte file"
            )));
        }
        // Bounded by MAX_HEADER_BYTES above, so the conversion cannot truncate.
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
        let mut entries = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            if name == "__metadata__" {
                continue;
            }
            let entry: Entry = serde_json::from_value(value)
                .map_err(|e| bad(format!("header entry {name}: {e}")))?;
            entries.insert(name, entry);
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            data_start: 8 + header_len,
            data_len: file_len - 8 - header_len,
            entries,
        })
    }

    /// Reads the `F32` tensor `name`, which must have `shape`.
    pub(crate) fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, Error> {
        let bad = |reason: String| Error::Weights {
            path: self.path.clone(),
            reason,
        };
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| bad(format!("tensor {name} is missing")))?;
        if entry.dtype != "F32" {
            return Err(bad(format!("tensor {name} is {}, not F32", entry.dtype)));
        }
        if entry.shape != shape {
            return Err(bad(format!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                entry.shape
            )));
        }
        let count: usize = shape.iter().product();
        let [begin, end] = entry.data_offsets;
        let byte_len = count as u64 * 4;
        if end < begin || end - begin != byte_len || end > self.data_len {
            return Err(bad(format!(
                "tensor {name}: data offsets {begin}..{end} do not hold {count} f32 values \
                 within the {}-byte data section",
                self.data_len
            )));
        }
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        self.file
            .seek(SeekFrom::Start(self.data_start + begin))
            .map_err(io)?;
        // Straight from the file into the tensor's buffer, then from little-endian (a no-op on
        // little-endian machines).
        let mut values = vec![0f32; count];
        self.file
            .read_exact(bytemuck::cast_slice_mut(&mut values))
            .map_err(io)?;
        for value in &mut values {
            *value = f32::from_bits(u32::from_le(value.to_bits()));
        }
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a safetensors file holding `tensors` (name, shape, values).
    fn write(dir: &Path, tensors: &[(&str, &[usize], &[f32])]) -> PathBuf {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut data = Vec::new();
        for (name, shape, values) in tensors {
            let begin = data.len();
            for v in *values {
                data.extend_from_slice(&v.to_le_bytes());
            }
            header.insert(
                (*name).into(),
                serde_json::json!({"dtype":"F32","shape":shape,"data_offsets":[begin, data.len()]}),
            );
        }
        let header = serde_json::to_vec(&header).unwrap();
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&data);
        let path = dir.join("model.safetensors");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("minilm-weights-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tensors_are_read_by_name_and_shape() {
        let dir = temp_dir("read");
        let big: Vec<f32> = (0..40_000).map(|i| i as f32 * 0.5).collect();
        let path = write(
            &dir,
            &[
                ("a", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
                ("b", &[200, 200], &big),
            ],
        );
        let mut weights = Weights::open(&path).unwrap();
        let a = weights.tensor("a", &[2, 3]).unwrap();
        assert_eq!(
            a.to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]
        );
        let b = weights.tensor("b", &[200, 200]).unwrap();
        assert_eq!(b.flatten_all().unwrap().to_vec1::<f32>().unwrap(), big);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_and_misshapen_tensors_are_errors() {
        let dir = temp_dir("errors");
        let path = write(&dir, &[("a", &[2, 3], &[0.0; 6])]);
        let mut weights = Weights::open(&path).unwrap();
        let missing = weights.tensor("nope", &[2, 3]).unwrap_err().to_string();
        assert!(missing.contains("nope is missing"), "{missing}");
        let shape = weights.tensor("a", &[3, 2]).unwrap_err().to_string();
        assert!(shape.contains("expected [3, 2]"), "{shape}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_truncated_or_garbage_file_is_an_error() {
        let dir = temp_dir("garbage");
        let path = dir.join("model.safetensors");
        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\x7f{}").unwrap();
        assert!(matches!(Weights::open(&path), Err(Error::Weights { .. })));
        std::fs::write(&path, b"\x02\x00\x00\x00\x00\x00\x00\x00[]").unwrap();
        assert!(matches!(Weights::open(&path), Err(Error::Weights { .. })));
        std::fs::write(&path, b"\x01").unwrap();
        assert!(matches!(Weights::open(&path), Err(Error::Io { .. })));
        // Offsets past the end of the file.
        let header = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 8]);
        std::fs::write(&path, bytes).unwrap();
        let mut weights = Weights::open(&path).unwrap();
        assert!(matches!(
            weights.tensor("a", &[4]),
            Err(Error::Weights { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
