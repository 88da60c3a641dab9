//! Matrix products for the shapes of small convolutions, where a general GEMM is slow.
//!
//! A dense convolution as im2col + GEMM multiplies matrices with a short inner dimension and a
//! long outer one: LeNet-5's second convolution is `[16, 150] x [150, 3200]` forward and
//! `[150, 16] x [16, 3200]` for the input gradient. The `gemm` crate behind burn-flex packs both
//! operands and, with 16 or 6 rows, fills its tiles poorly: 1.2 ms and 2.3 ms on one core here,
//! where PyTorch's BLAS takes 0.25 ms. The kernels below need no packing:
//!
//! - [`matmul_into`] `C = A x B` with `B` and `C` row-major: a `6 x 16` block of `C` stays in
//!   registers while the inner dimension streams one 16-wide row slice of `B` at a time (a
//!   `16 x K` slice of `B` stays in L1 and is reused by every block of rows); `A` is read one
//!   element at a time, so any strides work (`W^T` for the input gradient is free).
//! - [`matmul_bt`] `C = A x B^T` with `A` and `B` row-major and a long inner dimension (the
//!   weight gradient `dy [Cout, N*P] x cols^T`): dot products of row pairs, `4 x 3` at a time,
//!   the inner dimension split across threads and summed.
//!
//! With AVX2 and FMA (checked at run time) the blocks are explicit 8-lane FMAs; otherwise a plain
//! loop computes the same sums.

use rayon::prelude::*;

/// A row-major view: element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// Inner-dimension elements per parallel task in [`matmul_bt`].
const INNER_PER_TASK: usize = 4096;

pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: users write disjoint parts of the output from each task (see `matmul`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(crate) fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Columns `[j0, j1)` of `C = A [m, k] x B [k, ..]`, written into `c` (row stride `ldc`), on
/// the calling thread: `A` any strides, `B` row-major with row stride `ldb`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_into(
    m: usize,
    k: usize,
    a: View,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    j0: usize,
    j1: usize,
) {
    if m == 0 || j1 <= j0 {
        return;
    }
    assert!(k == 0 || (m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "matmul: A is too short");
    assert!(k == 0 || (k - 1) * ldb + j1 <= b.len(), "matmul: B is too short");
    assert!(j1 <= ldc && (m - 1) * ldc + j1 <= c.len(), "matmul: C is too short");
    for i in 0..m {
        c[i * ldc + j0..i * ldc + j1].fill(0.0);
    }
    block_cols(m, ldc, k, a, b, ldb, c, j0, j1);
}

#[allow(clippy::too_many_arguments)]
fn block_cols(m: usize, n: usize, k: usize, a: View, b: &[f32], ldb: usize, c: &mut [f32], j0: usize, j1: usize) {
    block_cols_on(Path::detect(), m, n, k, a, b, ldb, c, j0, j1)
}

/// The instruction-set paths of [`matmul_into`], chosen once per call from the running CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// AVX-512F: a `12 x 32` block of `C` in 24 zmm registers.
    Avx512,
    /// AVX2 + FMA: a `6 x 16` block of `C` in 12 ymm registers.
    Avx2,
    /// Plain loops (any CPU).
    Portable,
}

impl Path {
    /// The fastest path this CPU runs.
    pub fn detect() -> Path {
        Path::available().into_iter().next().unwrap_or(Path::Portable)
    }

    /// Every path this CPU runs, fastest first (the portable path always last).
    pub fn available() -> Vec<Path> {
        let mut paths = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                paths.push(Path::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                paths.push(Path::Avx2);
            }
        }
        paths.push(Path::Portable);
        paths
    }
}

/// [`matmul_into`] on a given path (tests run every path the CPU has).
#[allow(clippy::too_many_arguments)]
pub fn matmul_into_on(
    path: Path,
    m: usize,
    k: usize,
    a: View,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    j0: usize,
    j1: usize,
) {
    if m == 0 || j1 <= j0 {
        return;
    }
    assert!(Path::available().contains(&path), "matmul: path {path:?} is not supported by this CPU");
    assert!(k == 0 || (m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "matmul: A is too short");
    assert!(k == 0 || (k - 1) * ldb + j1 <= b.len(), "matmul: B is too short");
    assert!(j1 <= ldc && (m - 1) * ldc + j1 <= c.len(), "matmul: C is too short");
    for i in 0..m {
        c[i * ldc + j0..i * ldc + j1].fill(0.0);
    }
    block_cols_on(path, m, ldc, k, a, b, ldb, c, j0, j1);
}

#[allow(clippy::too_many_arguments)]
fn block_cols_on(
    path: Path,
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    j0: usize,
    j1: usize,
) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller picked the path from `Path::available` (AVX-512F present); indices
        // are checked by `matmul_into`.
        Path::Avx512 => unsafe { x86_512::block_cols(m, n, k, a, b, ldb, c, j0, j1) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA are present (see `Path::available`); indices checked as above.
        Path::Avx2 => unsafe { x86::block_cols(m, n, k, a, b, ldb, c, j0, j1) },
        _ => portable_cols(m, n, k, a, b, ldb, c, j0, j1),
    }
}

#[allow(clippy::too_many_arguments)]
fn portable_cols(m: usize, n: usize, k: usize, a: View, b: &[f32], ldb: usize, c: &mut [f32], j0: usize, j1: usize) {
    for i in 0..m {
        let crow = &mut c[i * n + j0..i * n + j1];
        for p in 0..k {
            let av = a.data[i * a.rs + p * a.cs];
            for (cv, &bv) in crow.iter_mut().zip(&b[p * ldb + j0..p * ldb + j1]) {
                *cv += av * bv;
            }
        }
    }
}

/// `A` packed once for the AVX-512 path's micro-kernel (14-row panels per 256-deep slice of the
/// inner dimension), for products that reuse it across many column blocks: the convolution's
/// weights across images and tasks. [`PackedA::new`] gives `None` where the running CPU or the
/// shape does not take the packed path; [`matmul_into_pre`] then uses the plain view.
pub struct PackedA {
    m: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Packs `A [m, k]` (any strides) when this CPU takes the AVX-512 packed path for it and the
    /// product has enough columns in all (`cols`, every image and task together) for the packing
    /// to pay.
    pub fn new(m: usize, k: usize, a: View, cols: usize) -> Option<PackedA> {
        #[cfg(target_arch = "x86_64")]
        if Path::detect() == Path::Avx512
            && m >= x86_512::PACK_MIN_ROWS
            && k >= x86_512::PACK_MIN_INNER
            && cols >= x86_512::PACK_A_MIN_COLS
        {
            assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "PackedA: A is too short");
            let mut data = Vec::new();
            x86_512::pack_a_into(m, k, a, &mut data);
            return Some(PackedA { m, k, data });
        }
        let _ = (m, k, a, cols);
        None
    }

    /// Rows per panel: a row block given to [`matmul_into_pre`] must start at a multiple.
    pub const PANEL_ROWS: usize = 14;
}

/// [`matmul_into`] for rows `[i0, i0 + m)` of a product whose `A` may be pre-packed: with
/// `packed` (made from the whole `A`), the packed panels are used and `a` is ignored; without,
/// `a` (the view of those rows) is. `c` starts at row `i0`. Same result, bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn matmul_into_pre(
    packed: Option<&PackedA>,
    i0: usize,
    m: usize,
    k: usize,
    a: View,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    j0: usize,
    j1: usize,
) {
    let Some(pa) = packed else {
        return matmul_into(m, k, a, b, ldb, c, ldc, j0, j1);
    };
    if m == 0 || j1 <= j0 {
        return;
    }
    assert!(pa.k == k && i0 + m <= pa.m, "matmul_into_pre: rows or inner dimension do not match the packing");
    assert!(i0 % PackedA::PANEL_ROWS == 0, "matmul_into_pre: a row block must start at a panel boundary");
    assert!((k - 1) * ldb + j1 <= b.len(), "matmul_into_pre: B is too short");
    assert!(j1 <= ldc && (m - 1) * ldc + j1 <= c.len(), "matmul_into_pre: C is too short");
    #[cfg(target_arch = "x86_64")]
    x86_512::PACK_B.with(|pb| {
        // SAFETY: `PackedA::new` only packs on a CPU with AVX-512F; the packing covers rows
        // [i0, i0 + m) and the inner dimension k (checked above), B and C are checked above.
        unsafe {
            x86_512::packed_cols_pre(
                &pa.data,
                i0 / PackedA::PANEL_ROWS,
                m,
                ldc,
                k,
                b,
                ldb,
                c,
                j0,
                j1,
                &mut pb.borrow_mut(),
            )
        }
    });
}

/// Columns per packed panel of `B` ([`matmul_panels`]).
pub const PANEL_COLS: usize = 32;

/// Columns `[j0, j1)` (`j0` a multiple of [`PANEL_COLS`]) of rows `[i0, i0 + m)` of
/// `C = A x B`, with `A` pre-packed and `B` given as packed panels: panel `jp` (columns
/// `32 jp .. 32 jp + 32`) holds `k x 32` floats at `jp * k * 32`, zero past the last column (the
/// dense convolution's im2col writes this layout directly, so no copy of `B` is made). `c` starts
/// at row `i0`, row stride `ldc`. Same result as [`matmul_into`], bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn matmul_panels(
    packed: &PackedA,
    i0: usize,
    m: usize,
    k: usize,
    panels: &[f32],
    c: &mut [f32],
    ldc: usize,
    j0: usize,
    j1: usize,
) {
    if m == 0 || j1 <= j0 {
        return;
    }
    assert!(packed.k == k && i0 + m <= packed.m, "matmul_panels: rows or inner dimension do not match the packing");
    assert!(
        i0 % PackedA::PANEL_ROWS == 0 && j0 % PANEL_COLS == 0,
        "matmul_panels: blocks must start at panel boundaries"
    );
    assert!(j1.div_ceil(PANEL_COLS) * k * PANEL_COLS <= panels.len(), "matmul_panels: B's panels are too short");
    assert!(j1 <= ldc && (m - 1) * ldc + j1 <= c.len(), "matmul_panels: C is too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a `PackedA` exists only on a CPU with AVX-512F; every bound is checked above.
    unsafe {
        x86_512::panels_cols(&packed.data, i0 / PackedA::PANEL_ROWS, m, ldc, k, panels, c, j0, j1)
    };
}

/// `C [m, n] = A x B` for `A` pre-packed and `B` as panels (see [`matmul_panels`]) on rayon's
/// pool, in the blocks of [`task_split`]: the dense convolution's forward for one image.
pub fn matmul_panels_par(packed: &PackedA, panels: &[f32], c: &mut [f32], n: usize) {
    let (m, k) = (packed.m, packed.k);
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n, "matmul_panels_par: C is too short");
    let (rows, cols) = task_split(m, n, 1, rayon::current_num_threads());
    let (rb, cb) = (m.div_ceil(rows), n.div_ceil(cols));
    let out = SendPtr(c.as_mut_ptr());
    (0..rb * cb).into_par_iter().for_each(|t| {
        let (i0, j0) = ((t / cb) * rows, (t % cb) * cols);
        let (i1, j1) = ((i0 + rows).min(m), (j0 + cols).min(n));
        // SAFETY: task t writes rows [i0, i1) x columns [j0, j1) of C only (disjoint blocks).
        let cs = unsafe { std::slice::from_raw_parts_mut(out.get().add(i0 * n), (i1 - i0) * n) };
        matmul_panels(packed, i0, i1 - i0, k, panels, cs, n, j0, j1);
    });
}

/// `B [k, n]` (row-major, row stride `ldb`) as the panels [`matmul_panels`] reads.
pub fn pack_b_panels(k: usize, n: usize, b: &[f32], ldb: usize) -> Vec<f32> {
    let jpn = n.div_ceil(PANEL_COLS);
    let mut out = vec![0.0; jpn * k * PANEL_COLS];
    for p in 0..k {
        for (jp, src) in b[p * ldb..p * ldb + n].chunks(PANEL_COLS).enumerate() {
            out[(jp * k + p) * PANEL_COLS..][..src.len()].copy_from_slice(src);
        }
    }
    out
}

/// Columns of `C` per parallel task of [`matmul_par`] (and of the dense convolution's forward).
pub const TASK_COLS: usize = 512;

/// How [`matmul_par`] (and the dense convolution's forward) splits an `m x n` product over
/// `images` independent products: `(rows, cols)` per task. Columns in equal blocks of at most
/// [`TASK_COLS`], rounded to the packed panels' 32; when those blocks (times `images`) are fewer
/// than twice the threads, the rows are split too, into equal blocks rounded to the micro-kernel's
/// row block (14 rows with AVX-512, whose packed panels a block must start on; 6 otherwise), so
/// ResNet-18's last stage at batch 1 (49 columns, 512 rows) keeps every thread busy.
pub fn task_split(m: usize, n: usize, images: usize, threads: usize) -> (usize, usize) {
    let col_blocks = n.div_ceil(TASK_COLS).max(1);
    let cols = n.div_ceil(col_blocks).next_multiple_of(PANEL_COLS).min(TASK_COLS).max(1);
    let want = 2 * threads.max(1);
    let granule = if Path::detect() == Path::Avx512 { PackedA::PANEL_ROWS } else { 6 };
    let tasks = n.div_ceil(cols).max(1) * images.max(1);
    if tasks >= want || m <= 2 * granule {
        return (m.max(1), cols);
    }
    let row_blocks = want.div_ceil(tasks).min(m.div_ceil(2 * granule));
    let rows = m.div_ceil(row_blocks).next_multiple_of(granule).min(m);
    (rows.max(1), cols)
}

/// `C [m, n] = A [m, k] x B [k, n]` (`B`, `C` row-major with row strides `ldb`, `ldc`; `A` any
/// strides) on rayon's pool, in the blocks [`task_split`] gives; small products run on the calling
/// thread. Each task runs [`matmul_into`] on its block, so the result is the same bit for bit
/// whatever the thread count.
#[allow(clippy::too_many_arguments)]
pub fn matmul_par(m: usize, k: usize, a: View, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, n: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= ldc && (m - 1) * ldc + n <= c.len(), "matmul_par: C is too short");
    assert!(k == 0 || (m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "matmul_par: A is too short");
    let (rows, cols) = task_split(m, n, 1, rayon::current_num_threads());
    let (rb, cb) = (m.div_ceil(rows), n.div_ceil(cols));
    let packed = if rb * cb > 1 { PackedA::new(m, k, a, n) } else { None };
    let out = SendPtr(c.as_mut_ptr());
    let task = |t: usize| {
        let (i0, j0) = ((t / cb) * rows, (t % cb) * cols);
        let (i1, j1) = ((i0 + rows).min(m), (j0 + cols).min(n));
        // SAFETY: task t writes rows [i0, i1) x columns [j0, j1) of C only; the blocks of the
        // tasks are disjoint and inside `c` (checked above).
        let cs = unsafe { std::slice::from_raw_parts_mut(out.get().add(i0 * ldc), (i1 - i0 - 1) * ldc + n) };
        let sub = View { data: &a.data[i0 * a.rs..], rs: a.rs, cs: a.cs };
        matmul_into_pre(packed.as_ref(), i0, i1 - i0, k, sub, b, ldb, cs, ldc, j0, j1);
    };
    if rb * cb == 1 || m * n * k < 1 << 16 {
        (0..rb * cb).for_each(task);
    } else {
        (0..rb * cb).into_par_iter().for_each(task);
    }
}

/// `C [m, n] = A [m, k] x B [n, k]^T` with `A` and `B` row-major (row strides `lda`, `ldb`); the
/// result is row-major `[m, n]`. The inner dimension is split across threads.
pub fn matmul_bt(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &[f32], ldb: usize) -> Vec<f32> {
    if m == 0 || n == 0 || k == 0 {
        return vec![0.0; m * n];
    }
    assert!((m - 1) * lda + k <= a.len() && (n - 1) * ldb + k <= b.len(), "matmul_bt: operand too short");
    let tasks = k.div_ceil(INNER_PER_TASK).min(rayon::current_num_threads().max(1) * 2);
    let per = k.div_ceil(tasks);
    let part = |t: usize| {
        let (p0, p1) = (t * per, ((t + 1) * per).min(k));
        let mut c = vec![0.0f32; m * n];
        dots(m, n, a, lda, b, ldb, p0, p1, &mut c);
        c
    };
    // The partial sums are added in task order, so the result does not depend on how rayon
    // scheduled the tasks (its `reduce` tree does: training runs were not reproducible).
    let parts: Vec<Vec<f32>> = if tasks == 1 || m * n * k < 1 << 16 {
        (0..tasks).map(part).collect()
    } else {
        (0..tasks).into_par_iter().map(part).collect()
    };
    parts.into_iter().reduce(add).unwrap_or_else(|| vec![0.0; m * n])
}

fn add(mut x: Vec<f32>, y: Vec<f32>) -> Vec<f32> {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
    x
}

/// `c[i, j] += sum_{p in [p0, p1)} a[i, p] * b[j, p]`.
#[allow(clippy::too_many_arguments)]
fn dots(m: usize, n: usize, a: &[f32], lda: usize, b: &[f32], ldb: usize, p0: usize, p1: usize, c: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present (checked above); indices are checked by `matmul_bt`.
        unsafe { x86_512::dots(m, n, a, lda, b, ldb, p0, p1, c) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA are present (checked above); indices are checked by `matmul_bt`.
        unsafe { x86::dots(m, n, a, lda, b, ldb, p0, p1, c) };
        return;
    }
    for i in 0..m {
        for j in 0..n {
            let (ar, br) = (&a[i * lda + p0..i * lda + p1], &b[j * ldb + p0..j * ldb + p1]);
            c[i * n + j] += ar.iter().zip(br).map(|(x, y)| x * y).sum::<f32>();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::View;

    const MR: usize = 6;
    const NR: usize = 16;

    /// Inner-dimension block of the packed path: a packed `KC x 16` slice of `B` (16 KiB) stays
    /// in L1 while every block of rows of `A` streams past it.
    pub(super) const KC: usize = 256;

    /// Below this many rows, `B` is read in place: packing a slice costs about as much as one
    /// pass over it, and only pays when several row blocks reuse it.
    pub(super) const PACK_MIN_ROWS: usize = 24;

    /// Below this inner dimension, `B`'s `k x 16` slice is a few cache lines that stay in L1 even
    /// when read in place (LeNet-5's input gradient, `k` = 16, was slower packed).
    pub(super) const PACK_MIN_INNER: usize = 128;

    /// Columns `[j0, j1)` of `C = A x B` (see `super::matmul_into`).
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn block_cols(
        m: usize,
        n: usize,
        k: usize,
        a: View,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        j0: usize,
        j1: usize,
    ) {
        if m >= PACK_MIN_ROWS && k >= PACK_MIN_INNER {
            // SAFETY: as for the in-place path (same bounds).
            unsafe { packed_cols(m, n, k, a, b, ldb, c, j0, j1) };
            return;
        }
        let mut j = j0;
        while j + NR <= j1 {
            let mut i = 0;
            while i < m {
                let rows = (m - i).min(MR);
                // SAFETY: rows i..i+rows < m, columns j..j+NR <= n, p < k (bounds checked by
                // the caller for A and B; C is m x n).
                unsafe { micro(rows, k, a, i, &b[j..], ldb, c, n, j, None, false) };
                i += MR;
            }
            j += NR;
        }
        // The last columns (fewer than 16): the same block with masked loads and stores.
        if j < j1 {
            let masks = tail_masks(j1 - j);
            let mut i = 0;
            while i < m {
                let rows = (m - i).min(MR);
                // SAFETY: as above; lanes at or past j1 are neither read nor written.
                unsafe { micro(rows, k, a, i, &b[j..], ldb, c, n, j, Some(masks), false) };
                i += MR;
            }
        }
    }

    /// Lane masks selecting the first `rem` (< 16) lanes of a 16-wide block.
    #[target_feature(enable = "avx2,fma")]
    fn tail_masks(rem: usize) -> (__m256i, __m256i) {
        let rem = rem as i32;
        let lanes =
            |base: i32| _mm256_setr_epi32(base, base + 1, base + 2, base + 3, base + 4, base + 5, base + 6, base + 7);
        let mask = |base: i32| _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lanes(base));
        (mask(0), mask(8))
    }

    thread_local! {
        static PACK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// The packed path of [`block_cols`] for tall `A` (ResNet's and VGG's convolutions: up to 512
    /// rows and `K` = 4,608): for each 16-column slice of `B` and each `KC` block of the inner
    /// dimension, the `KC x 16` slice is copied into a contiguous buffer (zero-padded past `j1`),
    /// then every 6-row block of `A` accumulates its product with it into `C`. Read in place,
    /// `B`'s rows are `ldb` floats apart, which for batch-wide patch matrices maps a slice's rows
    /// onto a few L1 sets, so each row block reloaded the slice from L2.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn packed_cols(
        m: usize,
        n: usize,
        k: usize,
        a: View,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        j0: usize,
        j1: usize,
    ) {
        PACK.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.resize(KC * NR, 0.0);
            let mut j = j0;
            while j < j1 {
                let width = (j1 - j).min(NR);
                let masks = (width < NR).then(|| tail_masks(width));
                let mut p0 = 0;
                while p0 < k {
                    let kc = (k - p0).min(KC);
                    for (p, dst) in buf.chunks_exact_mut(NR).take(kc).enumerate() {
                        let src = &b[(p0 + p) * ldb + j..(p0 + p) * ldb + j + width];
                        dst[..width].copy_from_slice(src);
                        dst[width..].fill(0.0);
                    }
                    let ap = View { data: &a.data[p0 * a.cs..], rs: a.rs, cs: a.cs };
                    let mut i = 0;
                    while i < m {
                        let rows = (m - i).min(MR);
                        // SAFETY: rows i..i+rows < m and inner indices p0..p0+kc < k of A (checked
                        // by the caller, offset by p0 above); the packed slice holds kc x 16;
                        // C's block at (i, j) is in bounds, masked past j1.
                        unsafe { micro(rows, kc, ap, i, &buf, NR, c, n, j, masks, p0 > 0) };
                        i += MR;
                    }
                    p0 += kc;
                }
                j += NR;
            }
        });
    }

    /// A `rows x 16` block of `C` (rows <= 6) at `(i, j)`, kept in 12 registers over `k`: `b`
    /// starts at the block's first column (rows `ldb` apart: `B` read in place, or a packed slice
    /// with `ldb == 16`); with `masks`, only the lanes they select are read from `b` and read /
    /// written in `C`; with `accumulate`, the block is added to `C` instead of stored.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn micro(
        rows: usize,
        k: usize,
        a: View,
        i: usize,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        n: usize,
        j: usize,
        masks: Option<(__m256i, __m256i)>,
        accumulate: bool,
    ) {
        unsafe {
            let bp = b.as_ptr();
            let ap = a.data.as_ptr().add(i * a.rs);
            let cp = c.as_mut_ptr().add(i * n + j);
            macro_rules! go {
                ($masked:literal) => {
                    match rows {
                        6 => micro_rows::<6, $masked>(k, ap, a.rs, a.cs, bp, ldb, cp, n, masks, accumulate),
                        5 => micro_rows::<5, $masked>(k, ap, a.rs, a.cs, bp, ldb, cp, n, masks, accumulate),
                        4 => micro_rows::<4, $masked>(k, ap, a.rs, a.cs, bp, ldb, cp, n, masks, accumulate),
                        3 => micro_rows::<3, $masked>(k, ap, a.rs, a.cs, bp, ldb, cp, n, masks, accumulate),
                        2 => micro_rows::<2, $masked>(k, ap, a.rs, a.cs, bp, ldb, cp, n, masks, accumulate),
                        _ => micro_rows::<1, $masked>(k, ap, a.rs, a.cs, bp, ldb, cp, n, masks, accumulate),
                    }
                };
            }
            if masks.is_some() { go!(true) } else { go!(false) }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn micro_rows<const R: usize, const MASKED: bool>(
        k: usize,
        ap: *const f32,
        ars: usize,
        acs: usize,
        mut bp: *const f32,
        ldb: usize,
        cp: *mut f32,
        n: usize,
        masks: Option<(__m256i, __m256i)>,
        accumulate: bool,
    ) {
        unsafe {
            let (m0, m1) = masks.unwrap_or((_mm256_set1_epi32(-1), _mm256_set1_epi32(-1)));
            let load = |p: *const f32| {
                if MASKED {
                    (_mm256_maskload_ps(p, m0), _mm256_maskload_ps(p.add(8), m1))
                } else {
                    (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
                }
            };
            let mut acc0 = [_mm256_setzero_ps(); R];
            let mut acc1 = [_mm256_setzero_ps(); R];
            if accumulate {
                for r in 0..R {
                    (acc0[r], acc1[r]) = load(cp.add(r * n));
                }
            }
            let arow: [*const f32; R] = std::array::from_fn(|r| ap.add(r * ars));
            let mut off = 0;
            for _ in 0..k {
                let (b0, b1) = load(bp);
                for r in 0..R {
                    let av = _mm256_broadcast_ss(&*arow[r].add(off));
                    acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
                }
                bp = bp.add(ldb);
                off += acs;
            }
            for r in 0..R {
                if MASKED {
                    _mm256_maskstore_ps(cp.add(r * n), m0, acc0[r]);
                    _mm256_maskstore_ps(cp.add(r * n + 8), m1, acc1[r]);
                } else {
                    _mm256_storeu_ps(cp.add(r * n), acc0[r]);
                    _mm256_storeu_ps(cp.add(r * n + 8), acc1[r]);
                }
            }
        }
    }

    /// `c[i, j] += sum_{p in [p0, p1)} a[i, p] * b[j, p]`, 4 rows of `A` x 3 rows of `B` at a
    /// time, 8 lanes of `p` per step.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn dots(
        m: usize,
        n: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        p0: usize,
        p1: usize,
        c: &mut [f32],
    ) {
        const BM: usize = 4;
        const BN: usize = 3;
        let len = (p1 - p0) / 8 * 8;
        let mut i = 0;
        while i < m {
            let ri = (m - i).min(BM);
            let mut j = 0;
            while j < n {
                let rj = (n - j).min(BN);
                // SAFETY: rows i..i+ri < m of A and j..j+rj < n of B, columns p0..p1 <= k.
                let sums = unsafe { block_dots(a, lda, b, ldb, i, ri, j, rj, p0, len) };
                for (r, row) in sums.iter().enumerate().take(ri) {
                    for (s, &v) in row.iter().enumerate().take(rj) {
                        let (ar, br) = (&a[(i + r) * lda..], &b[(j + s) * ldb..]);
                        let tail: f32 = (p0 + len..p1).map(|p| ar[p] * br[p]).sum();
                        c[(i + r) * n + j + s] += v + tail;
                    }
                }
                j += BN;
            }
            i += BM;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn block_dots(
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        i: usize,
        ri: usize,
        j: usize,
        rj: usize,
        p0: usize,
        len: usize,
    ) -> [[f32; 3]; 4] {
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 3]; 4];
            // Rows past the edge read row 0 again (their sums are dropped).
            let arow: [*const f32; 4] =
                std::array::from_fn(|r| a.as_ptr().add((i + if r < ri { r } else { 0 }) * lda + p0));
            let brow: [*const f32; 3] =
                std::array::from_fn(|s| b.as_ptr().add((j + if s < rj { s } else { 0 }) * ldb + p0));
            let mut p = 0;
            while p < len {
                let bv =
                    [_mm256_loadu_ps(brow[0].add(p)), _mm256_loadu_ps(brow[1].add(p)), _mm256_loadu_ps(brow[2].add(p))];
                for r in 0..4 {
                    let av = _mm256_loadu_ps(arow[r].add(p));
                    for s in 0..3 {
                        acc[r][s] = _mm256_fmadd_ps(av, bv[s], acc[r][s]);
                    }
                }
                p += 8;
            }
            let mut out = [[0.0f32; 3]; 4];
            for r in 0..4 {
                for s in 0..3 {
                    let mut lanes = [0.0f32; 8];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r][s]);
                    out[r][s] = lanes.iter().sum();
                }
            }
            out
        }
    }
}

/// The AVX-512F path: the same loops as [`x86`] with a `12 x 32` register block (24 zmm
/// accumulators, 2 for the `B` row, 1 broadcast of `A`: 27 of the 32 registers) and `KC x 32`
/// packed slices of `B`. Every element of `C` is the same chain of fused multiply-adds over the
/// inner dimension in the same order as on the AVX2 path, so the two give bit-identical results
/// (the tests check it); only the block shape differs.
#[cfg(target_arch = "x86_64")]
mod x86_512 {
    use std::arch::x86_64::*;

    use super::View;
    pub(super) use super::x86::{PACK_MIN_INNER, PACK_MIN_ROWS};

    const MR: usize = 12;
    const NR: usize = 32;

    /// `c[i, j] += sum_{p in [p0, p1)} a[i, p] * b[j, p]` (see `super::dots`): `4 x 4` dot
    /// products at a time in 16 zmm accumulators, 16 lanes of `p` per step, cache-blocked: the
    /// inner dimension in chunks of 512 and `B`'s rows in groups of 256, so a chunk of the group
    /// (512 KiB) stays in L2 while every block of `A`'s rows passes over it (without the blocking
    /// the kernel streamed `B` from memory once per 4 rows of `A`: 50 GFLOP/s on ResNet-18's
    /// weight gradients, on AVX2 and AVX-512 alike).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn dots(
        m: usize,
        n: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        p0: usize,
        p1: usize,
        c: &mut [f32],
    ) {
        const BM: usize = 4;
        const BN: usize = 4;
        const PC: usize = 2048;
        const NB: usize = 64;
        let len = (p1 - p0) / 16 * 16;
        for c0 in (0..len).step_by(PC) {
            let cl = (len - c0).min(PC);
            let q0 = p0 + c0;
            for jb in (0..n).step_by(NB) {
                let jend = (jb + NB).min(n);
                let mut i = 0;
                while i < m {
                    let ri = (m - i).min(BM);
                    let arow: [&[f32]; BM] =
                        std::array::from_fn(|r| &a[(i + if r < ri { r } else { 0 }) * lda + q0..][..cl]);
                    let mut j = jb;
                    while j < jend {
                        let rj = (jend - j).min(BN);
                        let mut acc = [[_mm512_setzero_ps(); BN]; BM];
                        // Rows past the edge read row i / j again (their sums are dropped).
                        let brow: [&[f32]; BN] =
                            std::array::from_fn(|s| &b[(j + if s < rj { s } else { 0 }) * ldb + q0..][..cl]);
                        let mut p = 0;
                        while p < cl {
                            // SAFETY: p + 16 <= cl, the length of every row slice above.
                            unsafe {
                                let bv: [__m512; BN] =
                                    std::array::from_fn(|s| _mm512_loadu_ps(brow[s].as_ptr().add(p)));
                                for r in 0..BM {
                                    let av = _mm512_loadu_ps(arow[r].as_ptr().add(p));
                                    for s in 0..BN {
                                        acc[r][s] = _mm512_fmadd_ps(av, bv[s], acc[r][s]);
                                    }
                                }
                            }
                            p += 16;
                        }
                        for (r, row) in acc.iter().enumerate().take(ri) {
                            for (s, v) in row.iter().enumerate().take(rj) {
                                c[(i + r) * n + j + s] += _mm512_reduce_add_ps(*v);
                            }
                        }
                        j += BN;
                    }
                    i += BM;
                }
            }
        }
        if p0 + len < p1 {
            for i in 0..m {
                for j in 0..n {
                    let (ar, br) = (&a[i * lda..], &b[j * ldb..]);
                    c[i * n + j] += (p0 + len..p1).map(|q| ar[q] * br[q]).sum::<f32>();
                }
            }
        }
    }

    /// Lane masks of the two 16-lane halves of a `width`-wide (< 32) block.
    fn tail_masks(width: usize) -> (__mmask16, __mmask16) {
        let lanes = |w: usize| if w >= 16 { 0xFFFF } else { ((1u32 << w) - 1) as u16 };
        (lanes(width), lanes(width.saturating_sub(16)))
    }

    /// Columns `[j0, j1)` of `C = A x B` (see `super::matmul_into`).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn block_cols(
        m: usize,
        n: usize,
        k: usize,
        a: View,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        j0: usize,
        j1: usize,
    ) {
        if m >= PACK_MIN_ROWS && k >= PACK_MIN_INNER {
            // SAFETY: as for the in-place path (same bounds).
            unsafe { packed_cols(m, n, k, a, b, ldb, c, j0, j1) };
            return;
        }
        let mut j = j0;
        while j < j1 {
            let width = (j1 - j).min(NR);
            let masks = tail_masks(width);
            let mut i = 0;
            while i < m {
                let rows = (m - i).min(MR);
                // SAFETY: rows i..i+rows < m, columns j..j+width <= j1 <= n, p < k (checked by
                // the caller); lanes past `width` are masked off for B and C.
                unsafe { micro(rows, k, a, i, b.as_ptr().add(j), ldb, c, n, j, masks, false) };
                i += MR;
            }
            j += NR;
        }
    }

    thread_local! {
        static PACK: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        pub(super) static PACK_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Rows of a packed panel of `A`: 14 x 32 accumulators fill 28 of the 32 zmm registers (two
    /// for `B`, one broadcast, one spare); 14 x 32 ran at 85 % of the FMA peak on this machine's
    /// core with the inner loop unrolled 4x, against 80 % for 12 x 32.
    pub(super) const PMR: usize = 14;
    /// Inner-dimension depth of one packed slice: a `KPC x 32` panel of `B` (32 KiB) and a
    /// `14 x KPC` panel of `A` (14 KiB) share the 48 KiB L1.
    pub(super) const KPC: usize = 256;

    /// The packed path for tall `A` with a long inner dimension, in the BLIS layout: for each
    /// `KPC`-deep slice of the inner dimension, `A`'s rows are packed once into `14 x KPC` panels
    /// (14 consecutive floats per inner index: the micro-kernel broadcasts from one stream) and
    /// `B`'s columns `[j0, j1)` into `KPC x 32` panels (read row by row, each row's slice
    /// contiguous, so the hardware prefetcher follows), zero-padded so the micro-kernel's loads of
    /// `B` need no mask. Each element of `C` is still the sum over the inner index in order (each
    /// slice is added to the stored block), so the result is the in-place path's, bit for bit.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn packed_cols(
        m: usize,
        n: usize,
        k: usize,
        a: View,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        j0: usize,
        j1: usize,
    ) {
        PACK.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            let (pa, pb) = &mut *bufs;
            if j1 - j0 < PACK_A_MIN_COLS {
                // SAFETY: bounds as for the caller.
                unsafe { packed_b_cols(m, n, k, a, b, ldb, c, j0, j1, pb) };
                return;
            }
            pack_a_into(m, k, a, pa);
            // SAFETY: `pa` holds A packed for m x k (just above); bounds as for the caller.
            unsafe { packed_cols_pre(pa, 0, m, n, k, b, ldb, c, j0, j1, pb) };
        });
    }

    /// Below this many columns, packing `A` costs more than it saves (each element of `A` is
    /// used once per column: ResNet-18's last stage at batch 1 has 49): `A` is read in place.
    pub(super) const PACK_A_MIN_COLS: usize = 256;

    /// The packed path for few columns: `B`'s `KPC x 32` panels packed (zero-padded), `A`'s rows
    /// read in place (12 row streams, each contiguous when `A` is row-major).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn packed_b_cols(
        m: usize,
        n: usize,
        k: usize,
        a: View,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        j0: usize,
        j1: usize,
        pb: &mut Vec<f32>,
    ) {
        let jpanels = (j1 - j0).div_ceil(NR);
        pb.resize(jpanels * NR * KPC, 0.0);
        for p0 in (0..k).step_by(KPC) {
            let kc = (k - p0).min(KPC);
            pack_b(b, ldb, p0, kc, j0, j1, pb);
            let ap = View { data: &a.data[p0 * a.cs..], rs: a.rs, cs: a.cs };
            for jp in 0..jpanels {
                let j = j0 + jp * NR;
                let masks = tail_masks((j1 - j).min(NR));
                let bp = pb[jp * kc * NR..][..kc * NR].as_ptr();
                let mut i = 0;
                while i < m {
                    let rows = (m - i).min(MR);
                    // SAFETY: rows i..i+rows < m and inner indices p0..p0+kc < k of A; the B
                    // panel holds kc x 32; C's block at (i, j) is masked past j1.
                    unsafe { micro(rows, kc, ap, i, bp, NR, c, n, j, masks, p0 > 0) };
                    i += MR;
                }
            }
        }
    }

    /// `B [p0..p0+kc, j0..j1]` as `kc x 32` panels, zero-padded, into `pb` (two zmm moves per
    /// 32-wide row slice; `copy_from_slice` here was a `memmove` call per 128 bytes).
    #[target_feature(enable = "avx512f")]
    fn pack_b(b: &[f32], ldb: usize, p0: usize, kc: usize, j0: usize, j1: usize, pb: &mut [f32]) {
        if kc == 0 || j1 <= j0 {
            return;
        }
        let (full, tail) = ((j1 - j0) / NR, (j1 - j0) % NR);
        assert!((p0 + kc - 1) * ldb + j1 <= b.len(), "pack_b: B is too short");
        assert!(pb.len() >= (j1 - j0).div_ceil(NR) * kc * NR, "pack_b: the buffer is too short");
        let masks = tail_masks(tail);
        for p in 0..kc {
            // SAFETY: row p0+p of B holds columns j0..j1 (asserted above); panel jp's row p is
            // inside `pb` (asserted above); the tail's lanes past `tail` are masked off.
            unsafe {
                let src = b.as_ptr().add((p0 + p) * ldb + j0);
                for jp in 0..full {
                    let d = pb.as_mut_ptr().add((jp * kc + p) * NR);
                    _mm512_storeu_ps(d, _mm512_loadu_ps(src.add(jp * NR)));
                    _mm512_storeu_ps(d.add(16), _mm512_loadu_ps(src.add(jp * NR + 16)));
                }
                if tail > 0 {
                    let d = pb.as_mut_ptr().add((full * kc + p) * NR);
                    _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(masks.0, src.add(full * NR)));
                    _mm512_storeu_ps(d.add(16), _mm512_maskz_loadu_ps(masks.1, src.add(full * NR + 16)));
                }
            }
        }
    }

    /// `A [m, k]` in the packed layout: panel `ip` of 14 rows is `k x 14` floats at
    /// `ip * 14 * k` (inner index major, rows past `m` zero), so the inner slice `[p0, p0 + kc)`
    /// of a panel starts at `(ip * k + p0) * 14`.
    pub(super) fn pack_a_into(m: usize, k: usize, a: View, out: &mut Vec<f32>) {
        let panels = m.div_ceil(PMR);
        out.clear();
        out.resize(panels * PMR * k, 0.0);
        for (ip, panel) in out.chunks_exact_mut(PMR * k).enumerate() {
            for r in 0..(m - ip * PMR).min(PMR) {
                let base = (ip * PMR + r) * a.rs;
                if a.cs == 1 {
                    for (d, &v) in panel.chunks_exact_mut(PMR).zip(&a.data[base..base + k]) {
                        d[r] = v;
                    }
                } else {
                    for (p, d) in panel.chunks_exact_mut(PMR).enumerate() {
                        d[r] = a.data[base + p * a.cs];
                    }
                }
            }
        }
    }

    /// Rows `[14 * ip0, 14 * ip0 + m)` of `C`, columns `[j0, j1)`, from `A` packed by
    /// [`pack_a_into`] and `B` packed here (into `pb`): `c` starts at the
    /// block's first row.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn packed_cols_pre(
        pa: &[f32],
        ip0: usize,
        m: usize,
        n: usize,
        k: usize,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        j0: usize,
        j1: usize,
        pb: &mut Vec<f32>,
    ) {
        let cols = j1 - j0;
        let jpanels = cols.div_ceil(NR);
        pb.resize(jpanels * NR * KPC, 0.0);
        for p0 in (0..k).step_by(KPC) {
            let kc = (k - p0).min(KPC);
            pack_b(b, ldb, p0, kc, j0, j1, pb);
            for jp in 0..jpanels {
                let j = j0 + jp * NR;
                let masks = tail_masks((j1 - j).min(NR));
                let bp = pb[jp * kc * NR..].as_ptr();
                for ip in 0..m.div_ceil(PMR) {
                    let rows = (m - ip * PMR).min(PMR);
                    let ap = pa[((ip0 + ip) * k + p0) * PMR..][..PMR * kc].as_ptr();
                    // SAFETY: the A panel holds kc x 14 floats (sliced above), the B panel kc x
                    // 32; C's block at (ip*14, j) has `rows` rows inside C, masked past j1.
                    unsafe { micro_packed(rows, kc, ap, bp, c, n, ip * PMR, j, masks, p0 > 0) };
                }
            }
        }
    }

    /// [`super::matmul_panels`]: `A` packed by [`pack_a_into`], `B` as `k x 32` panels.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panels_cols(
        pa: &[f32],
        ip0: usize,
        m: usize,
        n: usize,
        k: usize,
        pb: &[f32],
        c: &mut [f32],
        j0: usize,
        j1: usize,
    ) {
        // The whole inner dimension per block: C's 14 x 32 block stays in registers, the A panel
        // (14 x k) and the B panel (k x 32) stream from L2 (measured 2-8 % faster than 256-deep
        // slices with C reloaded, on ResNet-18's shapes).
        for jp in j0 / NR..j1.div_ceil(NR) {
            let j = jp * NR;
            let masks = tail_masks((j1 - j).min(NR));
            let bp = pb[jp * k * NR..][..k * NR].as_ptr();
            for ip in 0..m.div_ceil(PMR) {
                let rows = (m - ip * PMR).min(PMR);
                let ap = pa[(ip0 + ip) * k * PMR..][..PMR * k].as_ptr();
                // SAFETY: the A panel holds k x 14 floats and the B panel k x 32 (sliced above);
                // C's block at (ip*14, j) has `rows` rows inside C, masked past j1.
                unsafe { micro_packed(rows, k, ap, bp, c, n, ip * PMR, j, masks, false) };
            }
        }
    }

    /// A `rows x 32` block of `C` (rows <= 14) at `(i, j)` from a packed `14 x k` panel of `A`
    /// and a packed `k x 32` panel of `B`; lanes outside `masks` of `C` are neither read nor
    /// written; with `accumulate`, the block is added to `C` instead of stored.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn micro_packed(
        rows: usize,
        k: usize,
        ap: *const f32,
        bp: *const f32,
        c: &mut [f32],
        n: usize,
        i: usize,
        j: usize,
        masks: (__mmask16, __mmask16),
        accumulate: bool,
    ) {
        unsafe {
            let cp = c.as_mut_ptr().add(i * n + j);
            macro_rules! go {
                ($($r:literal)*) => {
                    match rows {
                        $($r => micro_packed_rows::<$r>(k, ap, bp, cp, n, masks, accumulate),)*
                        _ => unreachable!("a packed block has 1 to 14 rows"),
                    }
                };
            }
            go!(14 13 12 11 10 9 8 7 6 5 4 3 2 1)
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn micro_packed_rows<const R: usize>(
        k: usize,
        mut ap: *const f32,
        mut bp: *const f32,
        cp: *mut f32,
        n: usize,
        (m0, m1): (__mmask16, __mmask16),
        accumulate: bool,
    ) {
        unsafe {
            let mut acc0 = [_mm512_setzero_ps(); R];
            let mut acc1 = [_mm512_setzero_ps(); R];
            if accumulate {
                for r in 0..R {
                    acc0[r] = _mm512_maskz_loadu_ps(m0, cp.add(r * n));
                    acc1[r] = _mm512_maskz_loadu_ps(m1, cp.add(r * n + 16));
                }
            }
            macro_rules! step {
                () => {{
                    let b0 = _mm512_loadu_ps(bp);
                    let b1 = _mm512_loadu_ps(bp.add(16));
                    for r in 0..R {
                        let av = _mm512_set1_ps(*ap.add(r));
                        acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                        acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
                    }
                    bp = bp.add(NR);
                    ap = ap.add(PMR);
                }};
            }
            for _ in 0..k / 4 {
                step!();
                step!();
                step!();
                step!();
            }
            for _ in 0..k % 4 {
                step!();
            }
            for r in 0..R {
                _mm512_mask_storeu_ps(cp.add(r * n), m0, acc0[r]);
                _mm512_mask_storeu_ps(cp.add(r * n + 16), m1, acc1[r]);
            }
        }
    }

    /// A `rows x 32` block of `C` (rows <= 12) at `(i, j)`: `bp` points at the block's first
    /// column of `B` (rows `ldb` apart); lanes outside `masks` are neither read nor written; with
    /// `accumulate`, the block is added to `C` instead of stored.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn micro(
        rows: usize,
        k: usize,
        a: View,
        i: usize,
        bp: *const f32,
        ldb: usize,
        c: &mut [f32],
        n: usize,
        j: usize,
        masks: (__mmask16, __mmask16),
        accumulate: bool,
    ) {
        unsafe {
            let ap = a.data.as_ptr().add(i * a.rs);
            let cp = c.as_mut_ptr().add(i * n + j);
            macro_rules! go {
                ($($r:literal)*) => {
                    match rows {
                        $($r => micro_rows::<$r>(k, ap, a.rs, a.cs, bp, ldb, cp, n, masks, accumulate),)*
                        _ => unreachable!("a block has 1 to 12 rows"),
                    }
                };
            }
            go!(12 11 10 9 8 7 6 5 4 3 2 1)
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn micro_rows<const R: usize>(
        k: usize,
        ap: *const f32,
        ars: usize,
        acs: usize,
        mut bp: *const f32,
        ldb: usize,
        cp: *mut f32,
        n: usize,
        (m0, m1): (__mmask16, __mmask16),
        accumulate: bool,
    ) {
        unsafe {
            let mut acc0 = [_mm512_setzero_ps(); R];
            let mut acc1 = [_mm512_setzero_ps(); R];
            if accumulate {
                for r in 0..R {
                    acc0[r] = _mm512_maskz_loadu_ps(m0, cp.add(r * n));
                    acc1[r] = _mm512_maskz_loadu_ps(m1, cp.add(r * n + 16));
                }
            }
            let arow: [*const f32; R] = std::array::from_fn(|r| ap.add(r * ars));
            let mut off = 0;
            for _ in 0..k {
                let b0 = _mm512_maskz_loadu_ps(m0, bp);
                let b1 = _mm512_maskz_loadu_ps(m1, bp.add(16));
                for r in 0..R {
                    let av = _mm512_set1_ps(*arow[r].add(off));
                    acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
                }
                bp = bp.add(ldb);
                off += acs;
            }
            for r in 0..R {
                _mm512_mask_storeu_ps(cp.add(r * n), m0, acc0[r]);
                _mm512_mask_storeu_ps(cp.add(r * n + 16), m1, acc1[r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what}: element {i}: {g} vs {w}");
        }
    }

    #[test]
    fn matmul_matches_the_definition_for_edge_shapes() {
        // Rows not a multiple of 6, columns not a multiple of 16 or of the task width, k = 1.
        for &(m, n, k) in &[
            (6, 25088 / 16, 25),
            (16, 3200, 150),
            (150, 200, 16),
            (7, 37, 5),
            (1, 1, 1),
            (13, 530, 1),
            (5, 1040, 9),
            // The packed path (>= 24 rows): several inner blocks of 256 with a tail, ragged columns.
            (64, 100, 600),
            (30, 37, 257),
            (24, 16, 256),
            // Tails of the 12 x 32 block: 12 / 13 / 23 rows, 31 / 32 / 33 / 47 columns, packed
            // inner blocks of 128 with a tail of 1.
            (12, 32, 129),
            (13, 33, 300),
            (23, 31, 513),
            (25, 47, 128),
            (36, 64, 127),
        ] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let want: Vec<f32> =
                (0..m * n).map(|e| (0..k).map(|p| a[(e / n) * k + p] * b[p * n + e % n]).sum()).collect();
            // A given transposed: at = A^T stored [k, m]; A(i, p) = at[p * m + i].
            let at: Vec<f32> = (0..k * m).map(|e| a[(e % m) * k + e / m]).collect();
            let mut simd: Option<(Path, Vec<f32>)> = None;
            for path in Path::available() {
                let product = |a: View| {
                    // Two column ranges, so that a block boundary falls inside the row.
                    let mut c = vec![f32::NAN; m * n];
                    let half = n / 2;
                    matmul_into_on(path, m, k, a, &b, n, &mut c, n, 0, half);
                    matmul_into_on(path, m, k, a, &b, n, &mut c, n, half, n);
                    c
                };
                let got = product(View { data: &a, rs: k, cs: 1 });
                close(&got, &want, &format!("{path:?} A x B {m}x{n}x{k}"));
                let got_t = product(View { data: &at, rs: 1, cs: m });
                close(&got_t, &want, &format!("{path:?} A^T view {m}x{n}x{k}"));
                if path == Path::Portable {
                    continue;
                }
                // The SIMD paths run the same fused multiply-add chain per element, in the same
                // order: their results are equal bit for bit, whatever their block shapes.
                assert_eq!(got, got_t, "{path:?} {m}x{n}x{k}: A and A^T views differ");
                match &simd {
                    None => simd = Some((path, got)),
                    Some((first, want_bits)) => {
                        let same = got.iter().zip(want_bits).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{path:?} and {first:?} differ on {m}x{n}x{k}");
                    }
                }
            }
        }
    }

    #[test]
    fn prepacked_a_and_parallel_blocks_give_the_plain_product_bit_for_bit() {
        // Shapes around the packed path's thresholds (24 rows, 128 inner), its 14-row panels,
        // 256-deep slices and 32-wide column panels, and the task split's 56-row blocks.
        for &(m, k, n) in &[(24, 128, 1), (30, 300, 70), (57, 513, 100), (14, 256, 33), (130, 129, 49), (512, 600, 9)] {
            let a = values(m * k, 3);
            let b = values(k * n, 4);
            let mut want = vec![0.0; m * n];
            matmul_into(m, k, View { data: &a, rs: k, cs: 1 }, &b, n, &mut want, n, 0, n);
            let mut got = vec![0.0; m * n];
            matmul_par(m, k, View { data: &a, rs: k, cs: 1 }, &b, n, &mut got, n, n);
            assert_eq!(got, want, "matmul_par {m}x{k}x{n}");
            let packed = PackedA::new(m, k, View { data: &a, rs: k, cs: 1 }, 256);
            for i0 in (0..m).step_by(PackedA::PANEL_ROWS * 2) {
                let rows = (m - i0).min(PackedA::PANEL_ROWS * 3);
                let mut got = vec![f32::NAN; rows * n];
                let sub = View { data: &a[i0 * k..], rs: k, cs: 1 };
                matmul_into_pre(packed.as_ref(), i0, rows, k, sub, &b, n, &mut got, n, 0, n);
                assert_eq!(got, want[i0 * n..(i0 + rows) * n], "rows {i0}.. of {m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn b_panels_give_the_plain_product_bit_for_bit() {
        for &(m, k, n) in &[(24, 128, 1), (30, 300, 70), (57, 513, 100), (64, 576, 33)] {
            let Some(packed) = PackedA::new(m, k, View { data: &values(m * k, 5), rs: k, cs: 1 }, 256) else {
                eprintln!("no AVX-512F here: matmul_panels is not used");
                return;
            };
            let a = values(m * k, 5);
            let b = values(k * n, 6);
            let mut want = vec![0.0; m * n];
            matmul_into(m, k, View { data: &a, rs: k, cs: 1 }, &b, n, &mut want, n, 0, n);
            let jp = n.div_ceil(PANEL_COLS);
            let mut panels = vec![0.0; jp * k * PANEL_COLS];
            for p in 0..k {
                for j in 0..n {
                    panels[((j / PANEL_COLS) * k + p) * PANEL_COLS + j % PANEL_COLS] = b[p * n + j];
                }
            }
            let mut got = vec![f32::NAN; m * n];
            for j0 in (0..n).step_by(2 * PANEL_COLS) {
                let j1 = (j0 + 2 * PANEL_COLS).min(n);
                matmul_panels(&packed, 0, 14.min(m), k, &panels, &mut got, n, j0, j1);
                matmul_panels(&packed, 14, m - 14, k, &panels, &mut got[14 * n..], n, j0, j1);
            }
            assert_eq!(got, want, "{m}x{k}x{n}");
        }
    }

    #[test]
    fn matmul_bt_matches_the_definition_for_edge_shapes() {
        for &(m, n, k) in &[(6, 25, 25088), (16, 150, 3200), (5, 7, 13), (1, 1, 1), (4, 3, 8), (9, 4, 9001)] {
            let a = values(m * k, 3);
            let b = values(n * k, 4);
            let want: Vec<f32> =
                (0..m * n).map(|e| (0..k).map(|p| a[(e / n) * k + p] * b[(e % n) * k + p]).sum()).collect();
            // The dispatched product, then each SIMD dot kernel this CPU has on its own.
            let mut runs = vec![("dispatched", matmul_bt(m, n, k, &a, k, &b, k))];
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    let mut c = vec![0.0; m * n];
                    // SAFETY: AVX-512F is present; the operands are m x k and n x k.
                    unsafe { x86_512::dots(m, n, &a, k, &b, k, 0, k, &mut c) };
                    runs.push(("avx512", c));
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    let mut c = vec![0.0; m * n];
                    // SAFETY: AVX2 and FMA are present; the operands are m x k and n x k.
                    unsafe { x86::dots(m, n, &a, k, &b, k, 0, k, &mut c) };
                    runs.push(("avx2", c));
                }
            }
            for (path, got) in runs {
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    // Long sums in a different order: relative to the sum of magnitudes.
                    let scale: f32 = (0..k).map(|p| (a[(i / n) * k + p] * b[(i % n) * k + p]).abs()).sum();
                    assert!((g - w).abs() <= 1e-5 * (1.0 + scale), "{path} {m}x{n}x{k} element {i}: {g} vs {w}");
                }
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod timing {
    /// `cargo test -p kiln-kernels --lib gemm::timing -- --ignored --nocapture`: the weight
    /// gradient's dot kernels on ResNet-18 shapes at batch 8 @112 (one thread, best of 5).
    #[test]
    #[ignore]
    fn dots_paths() {
        for &(m, n, k) in &[(64usize, 576usize, 8 * 784usize), (128, 1152, 8 * 196), (256, 2304, 8 * 49)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
            let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
            for path in ["avx512", "avx2"] {
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let mut c = vec![0.0; m * n];
                    let t = std::time::Instant::now();
                    // SAFETY: this machine has both (the test is for it); operands are m x k, n x k.
                    unsafe {
                        if path == "avx512" {
                            super::x86_512::dots(m, n, &a, k, &b, k, 0, k, &mut c)
                        } else {
                            super::x86::dots(m, n, &a, k, &b, k, 0, k, &mut c)
                        }
                    };
                    best = best.min(t.elapsed().as_secs_f64());
                }
                println!("{m}x{n}x{k} {path}: {:.1} GFLOP/s", 2.0 * (m * n * k) as f64 / best / 1e9);
            }
        }
    }
}
