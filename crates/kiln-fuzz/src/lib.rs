//! # kiln-fuzz
//!
//! Bounded mutation fuzzing of kiln's file readers, inside `cargo test` on stable Rust (no
//! nightly, no libFuzzer): each target starts from a seed corpus of real files
//! (`corpus/`), applies stacked structure-blind mutations (bit flips, "interesting" integers in
//! 1 / 2 / 4 / 8-byte fields of either endianness, truncation, deleted / duplicated / inserted
//! ranges, long digit strings for text headers) and checks three properties on every input:
//!
//! - **no panic** (caught with `catch_unwind`, reported with the input),
//! - **no allocation larger than a bound derived from the file's size** ([`TrackingAlloc`], the
//!   test binary's global allocator, records the largest single request of the calling thread;
//!   requests above [`HARD_CAP`] are refused outright, so a header that claims 10^12 elements
//!   cannot take the machine down before it is reported),
//! - **a refusal is one non-empty line**, naming the file when the reader was given one.
//!
//! The input being tried is written to a file before each call (`in-flight-<target>`), so an
//! abort (which `catch_unwind` cannot catch) still leaves the input behind. Every failing input is
//! saved under the run's output folder; copy it to `corpus/regressions/<target>/` and it is replayed
//! before any mutation on every later run.
//!
//! **Guided by behaviour, not by coverage.** Without compiler instrumentation (libFuzzer's
//! SanitizerCoverage would mean a second, instrumented build of Burn) the runner uses what the
//! reader says as its feedback: a mutated input whose refusal has not been seen before (digits
//! masked, so "claims 12 bytes" and "claims 13 bytes" are one message) or that the reader accepts
//! has taken a path the pool had not reached, and joins the pool that later mutations start from
//! (up to [`POOL_CAP`] inputs). Inputs that pass the first checks of a parser therefore breed
//! inputs that test its later ones. The run length is fixed, so CI time stays predictable; the
//! same targets can be driven by cargo-fuzz later, and the properties stay.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Requests above this many bytes are refused (the allocator returns null).
pub const HARD_CAP: usize = 2 << 30;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size)
        }
    });
}

/// A global allocator over [`System`] that records, per thread, the largest single request since
/// [`reset_largest`]. Install it in a test binary:
/// `#[global_allocator] static A: kiln_fuzz::TrackingAlloc = kiln_fuzz::TrackingAlloc;`
pub struct TrackingAlloc;

unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        if layout.size() > HARD_CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        if layout.size() > HARD_CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        if new_size > HARD_CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Clears this thread's largest-allocation record.
pub fn reset_largest() {
    let _ = LARGEST.try_with(|l| l.set(0));
}

/// The largest single allocation this thread requested since [`reset_largest`].
pub fn largest() -> usize {
    LARGEST.try_with(|l| l.get()).unwrap_or(0)
}

/// A small deterministic generator (xorshift64*), so a run is reproducible from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INTERESTING: [u64; 14] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// One to four stacked mutations of `seed`.
pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(rng.next() as u8);
            continue;
        }
        // One mutation in four lands in the first 32 bytes, where formats keep their magic,
        // versions and lengths.
        let at = if rng.below(4) == 0 { rng.below(b.len().min(32)) } else { rng.below(b.len()) };
        match rng.below(10) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = INTERESTING[rng.below(6)] as u8,
            2 | 3 => {
                let width = [2usize, 4, 8][rng.below(3)];
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
                let bytes = if rng.below(2) == 0 { &bytes[..width] } else { &bytes[8 - width..] };
                let end = (at + width).min(b.len());
                b[at..end].copy_from_slice(&bytes[..end - at]);
            }
            4 => b.truncate(at),
            5 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                b.drain(at..end);
            }
            6 => {
                let len = 1 + rng.below(64.min(b.len()));
                let from = rng.below(b.len() + 1 - len);
                let chunk = b[from..from + len].to_vec();
                b.splice(at..at, chunk);
            }
            7 => {
                let n = 1 + rng.below(16);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, junk);
            }
            8 => {
                // Text headers (npy's dict, JSON): a number far past any sane size.
                let digits: &[u8] =
                    [&b"99999999999999999999999"[..], b"18446744073709551615", b"-1", b"1e308"][rng.below(4)];
                b.splice(at..at, digits.iter().copied());
            }
            _ => {
                let len = 1 + rng.below(16.min(b.len()));
                let from = rng.below(b.len() + 1 - len);
                let to = rng.below(b.len() + 1 - len);
                let chunk = b[from..from + len].to_vec();
                b[to..to + len].copy_from_slice(&chunk);
            }
        }
    }
    b
}

/// What a run of one target found.
#[derive(Debug)]
pub struct Outcome {
    /// The target's name.
    pub name: String,
    /// Inputs tried (regressions, seeds and mutations).
    pub inputs: usize,
    /// Inputs the reader accepted.
    pub accepted: usize,
    /// Distinct refusal messages (their first 60 characters after the file's name).
    pub distinct_errors: usize,
    /// Mutated inputs that joined the feedback pool (a new refusal, or accepted).
    pub pooled: usize,
    /// The largest single allocation of any input, and that input's size.
    pub largest_alloc: (usize, usize),
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Property violations: what happened, and where the input was saved.
    pub failures: Vec<(String, PathBuf)>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} inputs in {:.1} s, {} accepted, {} distinct refusals, {} pooled, largest allocation {} bytes (input of {} bytes), {} failures",
            self.name,
            self.inputs,
            self.elapsed.as_secs_f64(),
            self.accepted,
            self.distinct_errors,
            self.pooled,
            self.largest_alloc.0,
            self.largest_alloc.1,
            self.failures.len()
        )
    }
}

/// A fuzz target: a name, seed files, and the reader under test (`Err` is a refusal).
pub struct Target<'a> {
    /// Name (also the regression folder's name).
    pub name: &'a str,
    /// Seed inputs (real files).
    pub seeds: Vec<Vec<u8>>,
    /// Mutated inputs to try after the seeds and regressions.
    pub iterations: usize,
    /// The largest allocation allowed for an input of `len` bytes.
    pub bound: fn(usize) -> usize,
    /// The reader.
    pub read: &'a dyn Fn(&[u8]) -> Result<(), String>,
    /// The file name the reader was given, which every refusal must name (`None` for readers
    /// of bytes without a file, such as `npy::parse`).
    pub file: Option<&'a str>,
}

/// The default allocation bound: 64 MiB plus 16 bytes per input byte.
pub fn default_bound(len: usize) -> usize {
    (64 << 20) + 16 * len
}

/// Reads every file of `dir` (none when it is absent), sorted by name.
pub fn read_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => vec![],
    };
    files.sort();
    files.into_iter().filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b))).collect()
}

/// The most inputs the feedback pool of one run holds (seeds included).
pub const POOL_CAP: usize = 512;

/// A refusal with its digits masked: the key of "a new message" for the feedback pool.
fn message_key(e: &str) -> String {
    let mut k = String::new();
    for c in e.chars().take(120) {
        if c.is_ascii_digit() {
            if !k.ends_with('#') {
                k.push('#');
            }
        } else {
            k.push(c);
        }
    }
    k
}

/// Runs `target`: its regressions (`regressions/<name>/`), its seeds, then `iterations` mutations
/// (generator seeded by `rng_seed`), each of an input drawn from the feedback pool (the seeds,
/// then every input that gave a new refusal or was accepted). Failing inputs are saved in `out`.
pub fn run(target: &Target, regressions: &Path, out: &Path, rng_seed: u64) -> Outcome {
    run_with(target, regressions, out, rng_seed, true)
}

/// [`run`], with the feedback pool on or off (off: every mutation starts from a seed).
fn run_with(target: &Target, regressions: &Path, out: &Path, rng_seed: u64, feedback: bool) -> Outcome {
    let _ = std::fs::create_dir_all(out);
    let in_flight = out.join(format!("in-flight-{}", target.name));
    let mut inputs: Vec<Vec<u8>> = read_dir(&regressions.join(target.name)).into_iter().map(|(_, b)| b).collect();
    inputs.extend(target.seeds.iter().cloned());
    let mut rng = Rng::new(rng_seed);
    let mut outcome = Outcome {
        name: target.name.to_string(),
        inputs: 0,
        accepted: 0,
        distinct_errors: 0,
        pooled: 0,
        largest_alloc: (0, 0),
        elapsed: Duration::ZERO,
        failures: vec![],
    };
    let mut errors = std::collections::BTreeSet::new();
    let mut keys = std::collections::HashSet::new();
    let mut pool: Vec<Vec<u8>> = target.seeds.clone();
    let start = Instant::now();
    let fixed = inputs.len();
    let total = fixed + target.iterations;
    // Quiet panics: each one is reported as a failure with its input instead.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..total {
        let input = if i < fixed {
            std::mem::take(&mut inputs[i])
        } else {
            let parent = &pool[rng.below(pool.len())];
            mutate(parent, &mut rng)
        };
        let _ = std::fs::write(&in_flight, &input);
        reset_largest();
        let result = catch_unwind(AssertUnwindSafe(|| (target.read)(&input)));
        let big = largest();
        outcome.inputs += 1;
        if big > outcome.largest_alloc.0 {
            outcome.largest_alloc = (big, input.len());
        }
        let mut fail = |what: String| {
            let path = out.join(format!("{}-{i:05}.bin", target.name));
            let _ = std::fs::write(&path, &input);
            outcome.failures.push((what, path));
        };
        match result {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                fail(format!("panic: {msg}"));
            }
            Ok(Ok(())) => {
                outcome.accepted += 1;
                if feedback && i >= fixed && pool.len() < POOL_CAP && !pool.contains(&input) {
                    outcome.pooled += 1;
                    pool.push(input.clone());
                }
            }
            Ok(Err(e)) => {
                if e.trim().is_empty() || e.contains('\n') {
                    fail(format!("refusal is not one non-empty line: {e:?}"));
                } else if let Some(f) = target.file.filter(|f| !e.contains(f)) {
                    fail(format!("refusal does not name the file {f}: {e:?}"));
                }
                // What the reader says after naming the file (the file's path would fill the key).
                let said = target.file.and_then(|f| e.rfind(f).map(|i| &e[i + f.len()..])).unwrap_or(&e);
                errors.insert(said.chars().take(60).collect::<String>());
                if keys.insert(message_key(said)) && feedback && i >= fixed && pool.len() < POOL_CAP {
                    outcome.pooled += 1;
                    pool.push(input.clone());
                }
            }
        }
        if big > (target.bound)(input.len()) {
            fail(format!("allocated {big} bytes for an input of {} bytes", input.len()));
        }
    }
    std::panic::set_hook(hook);
    let _ = std::fs::remove_file(&in_flight);
    outcome.distinct_errors = errors.len();
    outcome.elapsed = start.elapsed();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_reproducible_and_change_the_input() {
        let seed = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'shape': (2, 3), }".to_vec();
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let mut changed = 0;
        for _ in 0..200 {
            let (x, y) = (mutate(&seed, &mut a), mutate(&seed, &mut b));
            assert_eq!(x, y);
            changed += (x != seed) as usize;
        }
        assert!(changed >= 190, "{changed} of 200 mutations changed the input");
    }

    #[test]
    fn feedback_reaches_a_check_blind_mutation_from_the_seed_does_not() {
        // A reader with four nested checks, each on one byte: from a seed that fails the first,
        // the panic behind the last needs four specific byte values at once, which blind
        // mutation of the seed does not find in 20 000 tries. With feedback each new refusal
        // joins the pool, and the run climbs one check at a time.
        let read = |b: &[u8]| -> Result<(), String> {
            if b.len() < 8 || b[0] != b'K' {
                return Err("no magic".into());
            }
            for (i, want, field) in [(1, 0x7f, "version"), (2, 0xff, "kind"), (3, 0x80, "flags"), (4, 0x7f, "count")] {
                if b[i] != want {
                    return Err(format!("bad {field}"));
                }
            }
            panic!("reached the deepest check");
        };
        let t = Target {
            name: "self-feedback",
            seeds: vec![b"K\0\0\0\0\0\0\0".to_vec()],
            iterations: 20_000,
            bound: default_bound,
            read: &read,
            file: None,
        };
        let out = std::env::temp_dir().join(format!("kiln-fuzz-feedback-{}", std::process::id()));
        let deepest = |o: &Outcome| o.failures.iter().any(|(w, _)| w.contains("deepest"));
        let blind = run_with(&t, &out.join("none"), &out, 3, false);
        assert!(!deepest(&blind) && blind.pooled == 0, "{blind}");
        let guided = run_with(&t, &out.join("none"), &out, 3, true);
        assert!(deepest(&guided) && guided.pooled >= 4, "{guided}");
        let _ = std::fs::remove_dir_all(&out);
        assert_eq!(message_key("claims 12 bytes of 4096"), "claims # bytes of #");
    }

    #[test]
    fn the_runner_reports_panics_and_bad_refusals_with_their_input() {
        let out = std::env::temp_dir().join(format!("kiln-fuzz-self-{}", std::process::id()));
        let read = |b: &[u8]| -> Result<(), String> {
            match b.first() {
                Some(0) => panic!("zero"),
                Some(1) => Err("two\nlines".into()),
                _ => Err("refused".into()),
            }
        };
        let t = Target {
            name: "self",
            seeds: vec![vec![0], vec![1], vec![2]],
            iterations: 0,
            bound: default_bound,
            read: &read,
            file: None,
        };
        let o = run(&t, &out.join("none"), &out, 1);
        assert_eq!(o.inputs, 3);
        assert_eq!(o.failures.len(), 2, "{o:?}");
        assert!(o.failures[0].0.contains("panic: zero"));
        assert_eq!(std::fs::read(&o.failures[0].1).unwrap(), vec![0]);
        assert!(o.failures[1].0.contains("one non-empty line"));
        let _ = std::fs::remove_dir_all(&out);
    }
}
