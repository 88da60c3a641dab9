//! Image folders: one subfolder per class, holding PNG and JPEG files (torchvision's
//! `ImageFolder` layout).
//!
//! ```text
//! root/cat/001.png        root/train/cat/001.png   root/test/cat/101.png
//! root/cat/002.jpg   or   root/train/dog/002.jpg   root/test/dog/102.jpg
//! root/dog/003.png        ...                      ...
//! ```
//!
//! Class ids are the class folder names sorted (byte order). Files are read in sorted name order.
//! Every image is converted to one channel count — grayscale (1) when all images are grayscale,
//! RGB (3) otherwise; alpha is dropped, RGB -> gray uses ITU-R 601 luma (`0.299 R + 0.587 G +
//! 0.114 B`, like PIL's `L`) — and all images must share one size.

use std::path::{Path, PathBuf};

use crate::dataset::{ImageDataset, Pixels, Split};
use crate::error::{DataError, Result, io_err, one_line};

/// One decoded image: width, height, interleaved channels (1..=4), `h * w * ch` bytes (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Interleaved channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
    pub channels: usize,
    /// `height * width * channels` bytes, row-major, channels interleaved.
    pub data: Vec<u8>,
}

fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg")
}

/// Decodes a PNG (8 or 16 bit, any colour type; 16-bit is reduced to 8, palettes expanded) or
/// JPEG file, chosen by its first bytes.
pub fn decode_image(path: &Path) -> Result<DecodedImage> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    decode_image_bytes(path, &bytes)
}

/// The most bytes a decoded image may take for a file of `len` bytes: a PNG's rows are DEFLATE
/// data, which expands at most 1032-fold, and kiln's colour conversion (palette or 1-bit grey to
/// 8-bit RGBA) multiplies that by at most 32; a JPEG has no such limit (a progressive JPEG's
/// end-of-band runs cover thousands of blocks in one code), so it gets the same budget. Above
/// 64 MiB an image must be backed by that many bytes of file, so a header cannot claim more
/// memory than the file could ever fill.
pub fn decoded_limit(len: usize) -> usize {
    (64 << 20usize).max(len.saturating_mul(1032 * 32))
}

/// [`decode_image`] on bytes already read (`path` names them in errors).
pub fn decode_image_bytes(path: &Path, bytes: &[u8]) -> Result<DecodedImage> {
    let bad = |reason: String| DataError::Decode { path: path.to_path_buf(), reason: one_line(&reason) };
    let limit = decoded_limit(bytes.len());
    let too_big = |w: usize, h: usize, n: usize| {
        bad(format!(
            "{w}x{h} image would decode to {n} bytes, more than a {}-byte file can hold (at most {limit}); the header is corrupt",
            bytes.len()
        ))
    };
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = dec.read_info().map_err(|e| bad(format!("PNG: {e}")))?;
        let (w, h) = (reader.info().width as usize, reader.info().height as usize);
        let size = reader.output_buffer_size().ok_or_else(|| bad("PNG too large".into()))?;
        if size > limit {
            return Err(too_big(w, h, size));
        }
        let mut buf = vec![0u8; size];
        let info = reader.next_frame(&mut buf).map_err(|e| bad(format!("PNG: {e}")))?;
        let (w, h) = (info.width as usize, info.height as usize);
        if w == 0 || h == 0 || info.line_size % w != 0 {
            return Err(bad(format!("PNG: unexpected layout ({w}x{h}, {} bytes a row)", info.line_size)));
        }
        let ch = info.line_size / w;
        buf.truncate(info.buffer_size());
        if !(1..=4).contains(&ch) {
            return Err(bad(format!("PNG: {ch} bytes per pixel after conversion")));
        }
        Ok(DecodedImage { width: w, height: h, channels: ch, data: buf })
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        use zune_jpeg::zune_core::bytestream::ZCursor;
        let mut dec = zune_jpeg::JpegDecoder::new(ZCursor::new(bytes));
        dec.decode_headers().map_err(|e| bad(format!("JPEG: {e:?}")))?;
        if let Some(info) = dec.info() {
            let (w, h) = (info.width as usize, info.height as usize);
            let n = w.saturating_mul(h).saturating_mul(dec.output_colorspace().map_or(4, |c| c.num_components()));
            if n > limit {
                return Err(too_big(w, h, n));
            }
        }
        let data = dec.decode().map_err(|e| bad(format!("JPEG: {e:?}")))?;
        let info = dec.info().ok_or_else(|| bad("JPEG: no header".into()))?;
        let (w, h) = (info.width as usize, info.height as usize);
        if w == 0 || h == 0 || data.len() % (w * h) != 0 || !(1..=4).contains(&(data.len() / (w * h))) {
            return Err(bad(format!("JPEG: {} bytes decoded for {w}x{h}", data.len())));
        }
        Ok(DecodedImage { width: w, height: h, channels: data.len() / (w * h), data })
    } else {
        Err(bad("neither PNG nor JPEG (unknown signature); convert it to .png or .jpg".into()))
    }
}

/// Converts interleaved `img` to `[C, H, W]` planes with `target` channels (1 or 3), appending
/// to `out`.
fn push_chw(img: &DecodedImage, target: usize, out: &mut Vec<u8>) {
    let hw = img.width * img.height;
    let px = |i: usize, k: usize| img.data[i * img.channels + k];
    let color = img.channels >= 3;
    if target == 1 {
        out.extend((0..hw).map(|i| {
            if color {
                let (r, g, b) = (px(i, 0) as f32, px(i, 1) as f32, px(i, 2) as f32);
                (0.299 * r + 0.587 * g + 0.114 * b).round().clamp(0.0, 255.0) as u8
            } else {
                px(i, 0)
            }
        }));
    } else {
        for k in 0..3 {
            out.extend((0..hw).map(|i| if color { px(i, k) } else { px(i, 0) }));
        }
    }
}

/// Sorted class subfolders of `dir` (hidden folders skipped).
fn class_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && e.path().is_dir() {
            v.push((name, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

/// Sorted PNG / JPEG files of a class folder.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && is_image_name(&name) && e.path().is_file() {
            v.push(e.path());
        }
    }
    v.sort();
    Ok(v)
}

/// True when `dir` has at least one non-hidden subfolder.
pub(crate) fn has_subdirs(dir: &Path) -> bool {
    class_dirs(dir).map(|v| !v.is_empty()).unwrap_or(false)
}

/// Reads one split laid out as `dir/<class>/<image>`.
///
/// `classes`: the class list to use (a test split takes its train split's list; its folders must
/// be among them); `None` takes the sorted subfolder names. `channels`: force 1 (gray) or 3
/// (RGB); `None` picks 3 when any image has colour, else 1.
pub fn read_image_folder(
    dir: &Path,
    classes: Option<&[String]>,
    channels: Option<usize>,
    split: Split,
) -> Result<ImageDataset> {
    read_folder_inner(dir, classes, channels, None, split).map(|(d, _)| d)
}

/// Reads a split; `size` (w, h, file) forces the image size of another split. Also returns the
/// file that set the size.
fn read_folder_inner(
    dir: &Path,
    classes: Option<&[String]>,
    channels: Option<usize>,
    size: Option<(usize, usize, PathBuf)>,
    split: Split,
) -> Result<(ImageDataset, PathBuf)> {
    if let Some(c) = channels {
        if c != 1 && c != 3 {
            return Err(DataError::InvalidArgument(format!(
                "an image folder is read with 1 (gray) or 3 (RGB) channels, not {c}"
            )));
        }
    }
    let dirs = class_dirs(dir)?;
    if dirs.is_empty() {
        return Err(DataError::EmptyFolder {
            path: dir.to_path_buf(),
            hint: "an image folder needs one subfolder per class holding .png/.jpg files".into(),
        });
    }
    let class_names: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => dirs.iter().map(|(n, _)| n.clone()).collect(),
    };
    let mut decoded: Vec<(PathBuf, usize, DecodedImage)> = Vec::new();
    for (name, path) in &dirs {
        let Some(id) = class_names.iter().position(|c| c == name) else {
            return Err(DataError::UnsupportedFormat {
                path: path.clone(),
                reason: format!(
                    "class folder {name:?} is not among the training classes {class_names:?}; \
                     rename or remove it"
                ),
            });
        };
        let files = image_files(path)?;
        if files.is_empty() {
            return Err(DataError::NoImages { path: path.clone() });
        }
        for f in files {
            let img = decode_image(&f)?;
            decoded.push((f, id, img));
        }
    }
    let (w, h, first_path) = match size {
        Some(s) => s,
        None => (decoded[0].2.width, decoded[0].2.height, decoded[0].0.clone()),
    };
    for (p, _, img) in &decoded {
        if img.width != w || img.height != h {
            return Err(DataError::SizeMismatch {
                path: p.clone(),
                found_w: img.width,
                found_h: img.height,
                width: w,
                height: h,
                first: first_path,
            });
        }
    }
    let target = channels.unwrap_or_else(|| if decoded.iter().any(|(_, _, i)| i.channels >= 3) { 3 } else { 1 });
    let mut pixels = Vec::with_capacity(decoded.len() * target * w * h);
    let mut labels = Vec::with_capacity(decoded.len());
    for (_, id, img) in &decoded {
        push_chw(img, target, &mut pixels);
        labels.push(*id);
    }
    Ok((ImageDataset::new(Pixels::U8(pixels), labels, [target, h, w], class_names, split)?, first_path))
}

/// Reads an image-folder dataset: `dir/train/<class>/..` (+ `dir/test/<class>/..` when present)
/// or, without a `train` folder, `dir/<class>/..` as the training split alone.
///
/// The test split uses the training split's classes and channel count.
pub fn read_image_folder_dataset(dir: &Path) -> Result<(ImageDataset, Option<ImageDataset>)> {
    let train_dir = dir.join("train");
    if train_dir.is_dir() && has_subdirs(&train_dir) {
        let (train, first) = read_folder_inner(&train_dir, None, None, None, Split::Train)?;
        let test_dir = dir.join("test");
        let test = if test_dir.is_dir() {
            let size = Some((train.width(), train.height(), first));
            Some(read_folder_inner(&test_dir, Some(train.class_names()), Some(train.channels()), size, Split::Test)?.0)
        } else {
            None
        };
        Ok((train, test))
    } else {
        Ok((read_image_folder(dir, None, None, Split::Train)?, None))
    }
}
