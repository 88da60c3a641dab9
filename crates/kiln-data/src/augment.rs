//! Seeded, reproducible image augmentation on the CPU.
//!
//! Images are `[C, H, W]` f32 buffers (`C * H * W` values, channels first, row-major), pixel
//! values in `[0, 1]` (augment before scaling: geometric ops fill with 0 = black, colour jitter
//! clamps to `[0, 1]`). Each op is a plain function of its parameters ([`hflip`], [`pad_crop`],
//! [`rotate`], [`shear`], [`elastic`], [`jitter`]); [`Augment`] chains them with random
//! parameters drawn from a small PRNG ([`Rng`], SplitMix64), so the same seed always gives the
//! same output on every machine.
//!
//! ```text
//! flip,crop:4,rotate:15,shear:0.2,elastic:34:4,jitter:0.2
//! ```

use crate::error::Result as DataResult;

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fast, seedable PRNG with good statistical
/// quality for augmentation and shuffling. Not cryptographic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent generator for item `item` of a run seeded with `seed` (e.g. image `i` of
    /// an epoch): the same `(seed, item)` always gives the same stream.
    pub fn for_item(seed: u64, item: u64) -> Self {
        let a = Rng::new(seed).next_u64();
        let b = Rng::new(item ^ 0xD1B5_4A32_D192_ED03).next_u64();
        Self::new(a ^ b.rotate_left(17))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` (53 random bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)` (`lo` when `lo == hi`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

fn check(img: &[f32], [c, h, w]: [usize; 3]) {
    assert_eq!(img.len(), c * h * w, "image buffer is not [C, H, W] = [{c}, {h}, {w}]");
}

/// Horizontal flip (mirror left-right) of a `[C, H, W]` image; returns `[C, H, W]`.
pub fn hflip(img: &[f32], shape: [usize; 3]) -> Vec<f32> {
    check(img, shape);
    let w = shape[2];
    let mut out = img.to_vec();
    for row in out.chunks_exact_mut(w) {
        row.reverse();
    }
    out
}

/// Zero-pads a `[C, H, W]` image by `pad` pixels on every side, then crops `H x W` starting at
/// `(dx, dy)` of the padded image (`0..=2*pad`; `dx = dy = pad` is the identity). Returns
/// `[C, H, W]`.
pub fn pad_crop(img: &[f32], shape: [usize; 3], pad: usize, dx: usize, dy: usize) -> Vec<f32> {
    check(img, shape);
    let [c, h, w] = shape;
    let mut out = vec![0f32; img.len()];
    for ch in 0..c {
        let src = &img[ch * h * w..(ch + 1) * h * w];
        let dst = &mut out[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = (y + dy) as isize - pad as isize;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            for x in 0..w {
                let sx = (x + dx) as isize - pad as isize;
                if sx >= 0 && sx < w as isize {
                    dst[y * w + x] = src[sy as usize * w + sx as usize];
                }
            }
        }
    }
    out
}

/// Bilinear sample of one `h x w` plane at `(x, y)`, 0 outside. Exact at integer coordinates.
#[inline]
fn bilinear(plane: &[f32], h: usize, w: usize, x: f64, y: f64) -> f32 {
    if !(x > -1.0 && y > -1.0 && x < w as f64 && y < h as f64) {
        return 0.0;
    }
    let (xf, yf) = (x.floor(), y.floor());
    let (fx, fy) = (x - xf, y - yf);
    let (x0, y0) = (xf as isize, yf as isize);
    let get = |xx: isize, yy: isize| {
        if xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
            plane[yy as usize * w + xx as usize] as f64
        } else {
            0.0
        }
    };
    let mut v = (1.0 - fx) * (1.0 - fy) * get(x0, y0);
    if fx != 0.0 {
        v += fx * (1.0 - fy) * get(x0 + 1, y0);
    }
    if fy != 0.0 {
        v += (1.0 - fx) * fy * get(x0, y0 + 1);
        if fx != 0.0 {
            v += fx * fy * get(x0 + 1, y0 + 1);
        }
    }
    v as f32
}

/// Inverse-mapped affine warp about the image centre: output pixel `(x, y)` takes the input at
/// `m * (x - cx, y - cy) + (cx, cy)` (bilinear, 0 outside), `m = [m00, m01, m10, m11]`.
fn affine_inverse(img: &[f32], [c, h, w]: [usize; 3], m: [f64; 4]) -> Vec<f32> {
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let mut out = vec![0f32; img.len()];
    for ch in 0..c {
        let src = &img[ch * h * w..(ch + 1) * h * w];
        let dst = &mut out[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let ry = y as f64 - cy;
            for x in 0..w {
                let rx = x as f64 - cx;
                let sx = m[0] * rx + m[1] * ry + cx;
                let sy = m[2] * rx + m[3] * ry + cy;
                dst[y * w + x] = bilinear(src, h, w, sx, sy);
            }
        }
    }
    out
}

/// Rotates a `[C, H, W]` image by `degrees` about its centre (positive = counter-clockwise as
/// displayed, like torchvision), bilinear, zero fill. Returns `[C, H, W]`; `0` is the identity.
pub fn rotate(img: &[f32], shape: [usize; 3], degrees: f64) -> Vec<f32> {
    check(img, shape);
    if degrees == 0.0 {
        return img.to_vec();
    }
    let (s, c) = degrees.to_radians().sin_cos();
    affine_inverse(img, shape, [c, -s, s, c])
}

/// Shears a `[C, H, W]` image about its centre: the output at `(x, y)` takes the input at
/// `(x + kx * (y - cy), y + ky * (x - cx))` (bilinear, zero fill). Returns `[C, H, W]`;
/// `kx = ky = 0` is the identity.
pub fn shear(img: &[f32], shape: [usize; 3], kx: f64, ky: f64) -> Vec<f32> {
    check(img, shape);
    if kx == 0.0 && ky == 0.0 {
        return img.to_vec();
    }
    affine_inverse(img, shape, [1.0, kx, ky, 1.0])
}

/// Reflect-mode index (`d c b a | a b c d | d c b a`, scipy's default) into `0..n`.
fn reflect(mut i: isize, n: usize) -> usize {
    let n = n as isize;
    loop {
        if i < 0 {
            i = -i - 1;
        } else if i >= n {
            i = 2 * n - i - 1;
        } else {
            return i as usize;
        }
    }
}

/// Separable Gaussian blur of one `h x w` field (kernel radius `ceil(4 sigma)`, reflect borders).
fn gaussian_blur(field: &[f64], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 {
        return field.to_vec();
    }
    let r = (4.0 * sigma).ceil() as isize;
    let mut k: Vec<f64> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= total);
    let mut tmp = vec![0f64; field.len()];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] =
                k.iter().enumerate().map(|(j, kv)| kv * field[y * w + reflect(x as isize + j as isize - r, w)]).sum();
        }
    }
    let mut out = vec![0f64; field.len()];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] =
                k.iter().enumerate().map(|(j, kv)| kv * tmp[reflect(y as isize + j as isize - r, h) * w + x]).sum();
        }
    }
    out
}

/// Elastic distortion (Simard, Steinkraus & Platt 2003): two fields of uniform `(-1, 1)` noise
/// drawn from `rng`, smoothed by a Gaussian of `sigma` pixels and scaled by `alpha`, displace
/// every pixel: the output at `(x, y)` takes the input at `(x + dx, y + dy)` (bilinear, zero
/// fill; the same field for all channels). Returns `[C, H, W]`; `alpha = 0` is the identity.
/// Simard used `alpha = 34, sigma = 4` on MNIST.
pub fn elastic(img: &[f32], shape: [usize; 3], alpha: f64, sigma: f64, rng: &mut Rng) -> Vec<f32> {
    check(img, shape);
    let [c, h, w] = shape;
    let noise = |rng: &mut Rng| -> Vec<f64> { (0..h * w).map(|_| rng.uniform(-1.0, 1.0)).collect() };
    let fx = noise(rng);
    let fy = noise(rng);
    if alpha == 0.0 {
        return img.to_vec();
    }
    let dx = gaussian_blur(&fx, h, w, sigma);
    let dy = gaussian_blur(&fy, h, w, sigma);
    let mut out = vec![0f32; img.len()];
    for ch in 0..c {
        let src = &img[ch * h * w..(ch + 1) * h * w];
        let dst = &mut out[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                dst[i] = bilinear(src, h, w, x as f64 + alpha * dx[i], y as f64 + alpha * dy[i]);
            }
        }
    }
    out
}

/// Colour jitter with given factors, torchvision's definitions, each result clamped to `[0, 1]`:
/// brightness `x * b`; contrast `(x - m) * c + m`, `m` the image's mean gray level; saturation
/// (3 channels only) `(x - g) * s + g`, `g` the pixel's gray level (ITU-R 601 luma). Factors of 1
/// change nothing (beyond the clamp). Returns `[C, H, W]`.
pub fn jitter(img: &[f32], shape: [usize; 3], brightness: f64, contrast: f64, saturation: f64) -> Vec<f32> {
    check(img, shape);
    let [c, h, w] = shape;
    let hw = h * w;
    let mut out: Vec<f32> = img.to_vec();
    let clamp = |v: f64| v.clamp(0.0, 1.0) as f32;
    let gray = |buf: &[f32], i: usize| -> f64 {
        if c == 3 {
            0.299 * buf[i] as f64 + 0.587 * buf[hw + i] as f64 + 0.114 * buf[2 * hw + i] as f64
        } else {
            buf[i] as f64
        }
    };
    if brightness != 1.0 {
        out.iter_mut().for_each(|x| *x = clamp(*x as f64 * brightness));
    }
    if contrast != 1.0 && hw > 0 {
        let m = (0..hw).map(|i| gray(&out, i)).sum::<f64>() / hw as f64;
        out.iter_mut().for_each(|x| *x = clamp((*x as f64 - m) * contrast + m));
    }
    if saturation != 1.0 && c == 3 {
        for i in 0..hw {
            let g = gray(&out, i);
            for ch in 0..3 {
                let x = &mut out[ch * hw + i];
                *x = clamp((*x as f64 - g) * saturation + g);
            }
        }
    }
    out
}

/// One augmentation step with its random ranges.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AugOp {
    /// `flip[:p]`: horizontal flip with probability `p` (default 0.5).
    Flip {
        /// Probability of flipping.
        p: f64,
    },
    /// `crop:pad`: zero-pad by `pad` pixels, crop back to `H x W` at a random offset.
    Crop {
        /// Padding on each side, in pixels.
        pad: usize,
    },
    /// `rotate:deg`: rotate by a uniform angle in `[-deg, deg]` degrees.
    Rotate {
        /// Largest rotation, in degrees.
        degrees: f64,
    },
    /// `shear:s`: shear factors `kx, ky` uniform in `[-s, s]` each.
    Shear {
        /// Largest shear factor.
        max: f64,
    },
    /// `elastic:alpha:sigma`: Simard's elastic distortion (see [`elastic`]).
    Elastic {
        /// Displacement scale, in pixels.
        alpha: f64,
        /// Smoothing of the displacement field, in pixels.
        sigma: f64,
    },
    /// `jitter:b[:c[:s]]`: brightness, contrast and saturation factors uniform in
    /// `[1 - b, 1 + b]` etc. (`jitter:x` sets all three to `x`; `jitter:b:c` leaves saturation
    /// at `c`).
    Jitter {
        /// Brightness range.
        brightness: f64,
        /// Contrast range.
        contrast: f64,
        /// Saturation range (3-channel images only).
        saturation: f64,
    },
}

impl AugOp {
    /// Applies the step to a `[C, H, W]` image, drawing its random parameters from `rng`.
    /// Every step draws the same number of values whatever the image, so pipelines stay in
    /// step across images of different sizes.
    pub fn apply(&self, img: &[f32], shape: [usize; 3], rng: &mut Rng) -> Vec<f32> {
        match *self {
            AugOp::Flip { p } => {
                if rng.chance(p) {
                    hflip(img, shape)
                } else {
                    img.to_vec()
                }
            }
            AugOp::Crop { pad } => {
                let dx = rng.below(2 * pad + 1);
                let dy = rng.below(2 * pad + 1);
                pad_crop(img, shape, pad, dx, dy)
            }
            AugOp::Rotate { degrees } => {
                let a = rng.uniform(-degrees, degrees);
                rotate(img, shape, a)
            }
            AugOp::Shear { max } => {
                let kx = rng.uniform(-max, max);
                let ky = rng.uniform(-max, max);
                shear(img, shape, kx, ky)
            }
            AugOp::Elastic { alpha, sigma } => elastic(img, shape, alpha, sigma, rng),
            AugOp::Jitter { brightness, contrast, saturation } => {
                let b = rng.uniform(1.0 - brightness, 1.0 + brightness);
                let c = rng.uniform(1.0 - contrast, 1.0 + contrast);
                let s = rng.uniform(1.0 - saturation, 1.0 + saturation);
                jitter(img, shape, b, c, s)
            }
        }
    }
}

impl std::fmt::Display for AugOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AugOp::Flip { p } if *p == 0.5 => write!(f, "flip"),
            AugOp::Flip { p } => write!(f, "flip:{p}"),
            AugOp::Crop { pad } => write!(f, "crop:{pad}"),
            AugOp::Rotate { degrees } => write!(f, "rotate:{degrees}"),
            AugOp::Shear { max } => write!(f, "shear:{max}"),
            AugOp::Elastic { alpha, sigma } => write!(f, "elastic:{alpha}:{sigma}"),
            AugOp::Jitter { brightness, contrast, saturation } => {
                write!(f, "jitter:{brightness}:{contrast}:{saturation}")
            }
        }
    }
}

/// Why an augmentation spec did not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugmentError {
    /// A name that is not an op.
    #[error(
        "unknown augmentation {name:?} in {spec:?}; known: flip[:p], crop:pad, rotate:deg, shear:s, elastic:alpha:sigma, jitter:b[:c[:s]]"
    )]
    Unknown {
        /// The unknown name.
        name: String,
        /// The whole spec.
        spec: String,
    },
    /// A missing or surplus parameter.
    #[error("augmentation {item:?} takes {expected}, got {found} parameter(s) (e.g. {example})")]
    Arity {
        /// The item as written.
        item: String,
        /// What it takes.
        expected: &'static str,
        /// How many were given.
        found: usize,
        /// A valid example.
        example: &'static str,
    },
    /// A parameter that is not a number or out of range.
    #[error("augmentation {item:?}: parameter {value:?} {reason}")]
    BadParam {
        /// The item as written.
        item: String,
        /// The parameter as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An empty item (`flip,,crop:4`).
    #[error("empty item in augmentation list {0:?} (remove the doubled or trailing comma)")]
    EmptyItem(String),
}

/// A chain of augmentation steps, applied in order.
///
/// Parse one from a comma list (`"flip,crop:4,rotate:15,shear:0.2,elastic:34:4,jitter:0.2"`;
/// `""` or `"none"` is the empty chain); `Display` writes it back in that form.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// The steps.
    pub ops: Vec<AugOp>,
}

impl Augment {
    /// The chain of `ops`.
    pub fn new(ops: Vec<AugOp>) -> Self {
        Self { ops }
    }

    /// Parses a comma list (see [`Augment`]).
    pub fn parse(spec: &str) -> Result<Self, AugmentError> {
        spec.parse()
    }

    /// True when the chain has no step.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Runs the chain on one `[C, H, W]` image, drawing from `rng`; returns `[C, H, W]`.
    ///
    /// Panics when `img.len() != C * H * W`.
    pub fn apply_image(&self, img: &[f32], shape: [usize; 3], rng: &mut Rng) -> Vec<f32> {
        check(img, shape);
        let mut cur = img.to_vec();
        for op in &self.ops {
            cur = op.apply(&cur, shape, rng);
        }
        cur
    }

    /// Runs the chain on a batch `[N, C, H, W]` (a flat buffer of `N` images); image `k` draws
    /// from [`Rng::for_item`]`(seed, k)`. Returns `[N, C, H, W]`.
    ///
    /// Errors when `batch` is not `N * C * H * W` long.
    pub fn apply_batch(&self, batch: &[f32], [n, c, h, w]: [usize; 4], seed: u64) -> DataResult<Vec<f32>> {
        let per = c * h * w;
        if batch.len() != n * per {
            return Err(crate::DataError::InvalidArgument(format!(
                "batch of {} values is not [N, C, H, W] = [{n}, {c}, {h}, {w}]",
                batch.len()
            )));
        }
        let mut out = Vec::with_capacity(batch.len());
        for k in 0..n {
            let mut rng = Rng::for_item(seed, k as u64);
            out.extend(self.apply_image(&batch[k * per..(k + 1) * per], [c, h, w], &mut rng));
        }
        Ok(out)
    }
}

impl std::fmt::Display for Augment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ops.is_empty() {
            return f.write_str("none");
        }
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{op}")?;
        }
        Ok(())
    }
}

fn num(item: &str, v: &str, lo: f64, hi: f64) -> Result<f64, AugmentError> {
    let bad = |reason: String| AugmentError::BadParam { item: item.into(), value: v.into(), reason };
    let x: f64 = v.trim().parse().map_err(|_| bad("is not a number".into()))?;
    if !x.is_finite() || x < lo || x > hi {
        return Err(bad(format!("is out of range [{lo}, {hi}]")));
    }
    Ok(x)
}

impl std::str::FromStr for Augment {
    type Err = AugmentError;

    fn from_str(spec: &str) -> Result<Self, AugmentError> {
        let trimmed = spec.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none") {
            return Ok(Self::default());
        }
        let mut ops = Vec::new();
        for item in trimmed.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(AugmentError::EmptyItem(spec.into()));
            }
            let mut parts = item.split(':');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let args: Vec<&str> = parts.collect();
            let arity = |expected: &'static str, example: &'static str| AugmentError::Arity {
                item: item.into(),
                expected,
                found: args.len(),
                example,
            };
            let op = match name.as_str() {
                "flip" | "hflip" => match args.as_slice() {
                    [] => AugOp::Flip { p: 0.5 },
                    [p] => AugOp::Flip { p: num(item, p, 0.0, 1.0)? },
                    _ => return Err(arity("0 or 1 parameter (probability)", "flip or flip:0.5")),
                },
                "crop" => match args.as_slice() {
                    [p] => {
                        let pad = p.trim().parse::<usize>().map_err(|_| AugmentError::BadParam {
                            item: item.into(),
                            value: p.to_string(),
                            reason: "is not a whole number of pixels".into(),
                        })?;
                        if pad > 4096 {
                            return Err(AugmentError::BadParam {
                                item: item.into(),
                                value: p.to_string(),
                                reason: "is out of range [0, 4096]".into(),
                            });
                        }
                        AugOp::Crop { pad }
                    }
                    _ => return Err(arity("1 parameter (padding in pixels)", "crop:4")),
                },
                "rotate" | "rot" => match args.as_slice() {
                    [d] => AugOp::Rotate { degrees: num(item, d, 0.0, 180.0)? },
                    _ => return Err(arity("1 parameter (max degrees)", "rotate:15")),
                },
                "shear" => match args.as_slice() {
                    [s] => AugOp::Shear { max: num(item, s, 0.0, 1.0)? },
                    _ => return Err(arity("1 parameter (max shear factor)", "shear:0.2")),
                },
                "elastic" => match args.as_slice() {
                    [a, s] => AugOp::Elastic { alpha: num(item, a, 0.0, 1e4)?, sigma: num(item, s, 0.0, 1e3)? },
                    _ => return Err(arity("2 parameters (alpha, sigma)", "elastic:34:4")),
                },
                "jitter" => {
                    let v = match args.as_slice() {
                        [x] => {
                            let x = num(item, x, 0.0, 1.0)?;
                            [x, x, x]
                        }
                        [b, c] => {
                            let c = num(item, c, 0.0, 1.0)?;
                            [num(item, b, 0.0, 1.0)?, c, c]
                        }
                        [b, c, s] => [num(item, b, 0.0, 1.0)?, num(item, c, 0.0, 1.0)?, num(item, s, 0.0, 1.0)?],
                        _ => return Err(arity("1 to 3 parameters (brightness, contrast, saturation)", "jitter:0.2")),
                    };
                    AugOp::Jitter { brightness: v[0], contrast: v[1], saturation: v[2] }
                }
                _ => return Err(AugmentError::Unknown { name, spec: spec.into() }),
            };
            ops.push(op);
        }
        Ok(Self { ops })
    }
}
