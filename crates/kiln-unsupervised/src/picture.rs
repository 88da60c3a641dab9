//! Image grids written as PNG: RBM filters, Gibbs samples, k-means centroids, autoencoder
//! originals next to their reconstructions.
//!
//! Tiles are laid out row by row, `cols` per row, with a one-pixel mid-grey border between
//! them, each pixel enlarged to `scale x scale`. Values are in `[0, 1]` (clamped; NaN is drawn
//! black). The file is written to a temporary file in the same folder and renamed, so a failed
//! write never leaves a partial PNG behind.

use std::path::Path;

use crate::error::{Result, UnsupervisedError};

const BORDER: u8 = 128;

/// Writes `images` (each `h * w` grayscale values in `[0, 1]`, row-major) as a grid PNG.
///
/// Errors when `images` is empty, when an image is not `h * w` long, when `h`, `w`, `cols` or
/// `scale` is zero, or when the file cannot be written.
pub fn save_grid_png(path: &Path, images: &[Vec<f32>], h: usize, w: usize, cols: usize, scale: usize) -> Result<()> {
    save_grid(path, images, 1, h, w, cols, scale)
}

/// Writes `images` (each `[3, h, w]` channels-first RGB values in `[0, 1]`) as a grid PNG.
pub fn save_grid_png_rgb(
    path: &Path,
    images: &[Vec<f32>],
    h: usize,
    w: usize,
    cols: usize,
    scale: usize,
) -> Result<()> {
    save_grid(path, images, 3, h, w, cols, scale)
}

/// Rescales `v` linearly to `[0, 1]` (min -> 0, max -> 1; a constant vector becomes 0.5). Used
/// to draw filters whose weights have arbitrary sign and scale.
pub fn normalize_unit(v: &[f32]) -> Vec<f32> {
    let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !(hi > lo) {
        return vec![0.5; v.len()];
    }
    v.iter().map(|x| (x - lo) / (hi - lo)).collect()
}

fn save_grid(path: &Path, images: &[Vec<f32>], c: usize, h: usize, w: usize, cols: usize, scale: usize) -> Result<()> {
    if images.is_empty() {
        return Err(UnsupervisedError::InvalidInput(format!("no images to draw into {}", path.display())));
    }
    if h == 0 || w == 0 || cols == 0 || scale == 0 {
        return Err(UnsupervisedError::InvalidArgument(format!(
            "picture grid needs positive height, width, columns and scale (got h={h}, w={w}, cols={cols}, scale={scale})"
        )));
    }
    if let Some((i, img)) = images.iter().enumerate().find(|(_, im)| im.len() != c * h * w) {
        return Err(UnsupervisedError::InvalidInput(format!(
            "image {i} has {} values, expected {c}x{h}x{w} = {}",
            img.len(),
            c * h * w
        )));
    }
    let cols = cols.min(images.len());
    let rows = images.len().div_ceil(cols);
    let (th, tw) = (h * scale, w * scale);
    let width = cols * tw + (cols + 1);
    let height = rows * th + (rows + 1);
    let mut buf = vec![BORDER; width * height * c];
    let to_u8 = |v: f32| if v.is_nan() { 0 } else { (v.clamp(0.0, 1.0) * 255.0).round() as u8 };
    for (k, img) in images.iter().enumerate() {
        let (r, col) = (k / cols, k % cols);
        let (y0, x0) = (1 + r * (th + 1), 1 + col * (tw + 1));
        for y in 0..th {
            for x in 0..tw {
                let (sy, sx) = (y / scale, x / scale);
                let o = ((y0 + y) * width + (x0 + x)) * c;
                for ch in 0..c {
                    buf[o + ch] = to_u8(img[ch * h * w + sy * w + sx]);
                }
            }
        }
    }
    let color = if c == 1 { png::ColorType::Grayscale } else { png::ColorType::Rgb };
    write_png_atomic(path, &buf, width as u32, height as u32, color)
}

/// Encodes 8-bit pixels and writes them to `path` through a temporary file + rename.
fn write_png_atomic(path: &Path, pixels: &[u8], width: u32, height: u32, color: png::ColorType) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let png_err =
            |e: png::EncodingError| UnsupervisedError::Png { path: path.to_path_buf(), message: e.to_string() };
        let mut enc = png::Encoder::new(&mut bytes, width, height);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(png_err)?;
        writer.write_image_data(pixels).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
    }
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically ([`kiln_data::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    kiln_data::write_atomic(path, bytes).map_err(|e| UnsupervisedError::Io { path: path.to_path_buf(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_png_round_trips_through_the_decoder() {
        let dir = std::env::temp_dir().join(format!("kiln-unsup-pic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("grid.png");
        // Three 2x3 images, 2 per row, scale 2: width 2*6 + 3 = 15, height 2*4 + 3 = 11.
        let imgs = vec![vec![0.0; 6], vec![1.0; 6], vec![0.5, 0.5, 0.5, 0.0, 0.0, 2.0]];
        save_grid_png(&path, &imgs, 2, 3, 2, 2).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut out = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut out).unwrap();
        assert_eq!((info.width, info.height), (15, 11));
        assert_eq!(out[0], BORDER);
        assert_eq!(out[15 + 1], 0); // first tile, first pixel
        assert_eq!(out[15 + 1 + 7], 255); // second tile starts after 6 + 1 border
        assert_eq!(out[6 * 15 + 1], 128); // third tile: 0.5 -> 128 (row 5 is the border)
        assert_eq!(out[(6 + 3) * 15 + 1 + 5], 255); // clamped 2.0, last pixel of tile 3
        let e = save_grid_png(&path, &[vec![0.0; 5]], 2, 3, 1, 1).unwrap_err().to_string();
        assert!(e.contains("image 0 has 5 values, expected 1x2x3 = 6"), "{e}");
        let e = save_grid_png(&dir.join("no/such/dir/x.png"), &imgs, 2, 3, 2, 2).unwrap_err().to_string();
        assert!(e.starts_with("cannot write"), "{e}");
        assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp-")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn normalize_unit_spans_zero_to_one() {
        assert_eq!(normalize_unit(&[-2.0, 0.0, 2.0]), vec![0.0, 0.5, 1.0]);
        assert_eq!(normalize_unit(&[3.0, 3.0]), vec![0.5, 0.5]);
    }
}
