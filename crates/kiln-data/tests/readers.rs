//! Readers, splits, batches and their errors: the built-in mnist-5k on disk, and tiny IDX,
//! CIFAR-10 and image-folder datasets written to a temporary folder.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_data::{DataError, Dataset, Format, ImageDataset, Split, detect_format};

// ---------------------------------------------------------------------------------------------
// helpers

/// A fresh, empty temporary folder for one test.
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-data-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [2051u32, n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&2049u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_png(path: &Path, w: u32, h: u32, color: png::ColorType, data: &[u8]) {
    let f = fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(data).unwrap();
    wr.finish().unwrap();
}

/// The error's message is one line and names `path`.
fn one_line_naming(e: &DataError, path: &Path) {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "multi-line message: {msg}");
    assert!(msg.contains(&path.display().to_string()), "message does not name {}: {msg}", path.display());
}

// ---------------------------------------------------------------------------------------------
// mnist-5k

#[test]
fn mnist_5k_sizes_and_class_balance() {
    let ds = Dataset::mnist_5k().unwrap();
    assert_eq!(ds.format, Format::Idx);
    assert_eq!(ds.name, "mnist-5k");
    let test = ds.test().unwrap();
    assert_eq!((ds.train.len(), test.len()), (4000, 1000));
    for d in [&ds.train, test] {
        assert_eq!(d.image_shape(), [1, 28, 28]);
        assert_eq!(d.num_classes(), 10);
        assert_eq!(d.class_names()[3], "3");
    }
    assert_eq!(ds.train.split(), Split::Train);
    assert_eq!(test.split(), Split::Test);
    assert_eq!(ds.train.class_counts(), vec![400; 10]);
    assert_eq!(test.class_counts(), vec![100; 10]);
    // The first labels of the file, as Python's gzip + struct read them.
    assert_eq!(&ds.train.labels()[..10], &[1, 5, 4, 9, 0, 2, 7, 3, 6, 1]);
}

#[test]
fn mnist_5k_pixel_statistics() {
    let ds = Dataset::mnist_5k().unwrap();
    // numpy: (train bytes / 255).mean() = 104646036 / (4000 * 784 * 255), .std() (population).
    let (mean, std) = ds.train.channel_stats();
    assert!((mean[0] - 0.130_859_888_955_582_23).abs() < 1e-9, "train mean {}", mean[0]);
    assert!((std[0] - 0.308_015_564_835_356_2).abs() < 1e-9, "train std {}", std[0]);
    let (tm, ts) = ds.test().unwrap().channel_stats();
    assert!((tm[0] - 0.133_158_59).abs() < 1e-4 && (ts[0] - 0.310_673_21).abs() < 1e-4, "test {tm:?} {ts:?}");
    let (lo, hi) = ds.train.channel_min_max();
    assert_eq!((lo[0], hi[0]), (0.0, 1.0));
}

#[test]
fn mnist_5k_loads_by_path_with_forced_and_detected_format() {
    let dir = kiln_data::data_dir().join("mnist-5k");
    assert_eq!(detect_format(&dir).unwrap(), Format::Idx);
    let a = Dataset::load(dir.to_str().unwrap(), Some(Format::Idx)).unwrap();
    let b = kiln_data::load("mnist-5k", None).unwrap();
    assert_eq!(a.train, b.train);
    // Forcing a wrong format is an error, not a panic.
    let e = Dataset::load(dir.to_str().unwrap(), Some(Format::Cifar10)).unwrap_err();
    assert!(matches!(e, DataError::MissingFile { .. }), "{e}");
    let e = Dataset::load(dir.to_str().unwrap(), Some(Format::ImageFolder)).unwrap_err();
    assert!(matches!(e, DataError::EmptyFolder { .. }), "{e}");
    assert_eq!("cifar-10".parse::<Format>().unwrap(), Format::Cifar10);
    assert!("tfrecord".parse::<Format>().is_err());
}

#[test]
fn batch_matches_get_and_labels() {
    let ds = Dataset::mnist_5k().unwrap();
    let device = Device::flex();
    let idx = [0usize, 1, 2, 3999];
    let (x, y) = ds.train.batch(&idx, &device);
    assert_eq!(x.dims(), [4, 1, 28, 28]);
    assert_eq!(y.dims(), [4]);
    let xs = x.into_data().try_to_vec::<f32>().unwrap();
    let ys: Vec<i64> = y.into_data().try_to_vec_as::<i64>().unwrap();
    for (k, &i) in idx.iter().enumerate() {
        let (img, label) = ds.train.get(i).unwrap();
        assert_eq!(&xs[k * 784..(k + 1) * 784], &img[..]);
        assert_eq!(ys[k], label as i64);
    }
    assert!(xs.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(ds.train.get(4000).is_none());
}

#[test]
fn validation_split_is_seeded_and_stratified() {
    let ds = Dataset::mnist_5k().unwrap();
    let (tr, va) = ds.train.split_validation(0.1, 42).unwrap();
    assert_eq!((tr.len(), va.len()), (3600, 400));
    assert_eq!(tr.class_counts(), vec![360; 10]);
    assert_eq!(va.class_counts(), vec![40; 10]);
    assert_eq!((tr.split(), va.split()), (Split::Train, Split::Validation));
    let (tr2, va2) = ds.train.split_validation(0.1, 42).unwrap();
    assert_eq!((&tr, &va), (&tr2, &va2));
    let (_, va3) = ds.train.split_validation(0.1, 43).unwrap();
    assert_ne!(va, va3);
    // Pixel mass is conserved: train + validation == the whole training split.
    let sum = |d: &ImageDataset| d.channel_stats().0[0] * d.len() as f64;
    assert!((sum(&tr) + sum(&va) - sum(&ds.train)).abs() < 1e-6);
    // Bad fractions and held-out splits are refused.
    assert!(ds.train.split_validation(0.0, 1).is_err());
    assert!(ds.train.split_validation(1.0, 1).is_err());
    assert!(ds.test().unwrap().split_validation(0.1, 1).is_err());
}

// ---------------------------------------------------------------------------------------------
// IDX on disk, and its errors

#[test]
fn idx_raw_and_gz_files_read_alike() {
    let d = tmp("idx-ok");
    let px: Vec<u8> = (0..3 * 2 * 2).map(|v| (v * 20) as u8).collect();
    fs::write(d.join("train-images-idx3-ubyte"), idx_images(3, 2, 2, &px)).unwrap();
    fs::write(d.join("train-labels-idx1-ubyte.gz"), gz(&idx_labels(&[0, 2, 1]))).unwrap();
    fs::write(d.join("t10k-images.idx3-ubyte.gz"), gz(&idx_images(1, 2, 2, &[255, 0, 0, 51]))).unwrap();
    fs::write(d.join("t10k-labels.idx1-ubyte"), idx_labels(&[3])).unwrap();
    let ds = Dataset::load(d.to_str().unwrap(), None).unwrap();
    assert_eq!(ds.format, Format::Idx);
    assert_eq!(ds.train.image_shape(), [1, 2, 2]);
    assert_eq!(ds.train.labels(), &[0, 2, 1]);
    // Both splits get the larger class count (labels go up to 3 in test).
    assert_eq!((ds.train.num_classes(), ds.test().unwrap().num_classes()), (4, 4));
    let (img, l) = ds.train.get(1).unwrap();
    assert_eq!(img, vec![80.0 / 255.0, 100.0 / 255.0, 120.0 / 255.0, 140.0 / 255.0]);
    assert_eq!(l, 2);
    assert_eq!(ds.test().unwrap().get(0).unwrap().0, vec![1.0, 0.0, 0.0, 0.2]);
}

#[test]
fn idx_corrupt_magic() {
    let d = tmp("idx-magic");
    let mut bad = idx_images(1, 2, 2, &[0; 4]);
    bad[3] = 0x02; // 2050
    let p = d.join("train-images-idx3-ubyte");
    fs::write(&p, bad).unwrap();
    fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[0])).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { expected: 2051, found: 2050, .. }), "{e}");
    one_line_naming(&e, &p);
    // Images and labels swapped: the labels file is given where images are expected.
    fs::write(&p, idx_labels(&[0])).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { found: 2049, .. }), "{e}");
}

#[test]
fn idx_truncated_file_says_expected_and_found_bytes() {
    let d = tmp("idx-trunc");
    let p = d.join("train-images-idx3-ubyte");
    // Header: 10 images of 28x28; only 5 present.
    fs::write(&p, idx_images(10, 28, 28, &vec![0u8; 5 * 784])).unwrap();
    fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[0; 10])).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    match &e {
        DataError::Truncated { expected, found, .. } => assert_eq!((*expected, *found), (16 + 7840, 16 + 3920)),
        other => panic!("expected Truncated, got {other}"),
    }
    one_line_naming(&e, &p);
    assert!(e.to_string().contains("expected 7856 bytes, found 3936"), "{e}");
    // A file cut inside its header.
    fs::write(&p, &idx_images(1, 2, 2, &[0; 4])[..10]).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::Truncated { expected: 16, found: 10, .. }), "{e}");
    // Extra bytes after the data.
    fs::write(&p, idx_images(1, 2, 2, &[0; 5])).unwrap();
    fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[0])).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::TrailingBytes { expected: 20, found: 21, .. }), "{e}");
}

#[test]
fn idx_count_mismatch() {
    let d = tmp("idx-count");
    fs::write(d.join("train-images-idx3-ubyte"), idx_images(3, 2, 2, &[0; 12])).unwrap();
    fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[0, 1])).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::CountMismatch { n_images: 3, n_labels: 2, .. }), "{e}");
    one_line_naming(&e, &d.join("train-labels-idx1-ubyte"));
}

#[test]
fn idx_corrupt_gzip_and_missing_labels() {
    let d = tmp("idx-gz");
    let p = d.join("train-images-idx3-ubyte.gz");
    let mut z = gz(&idx_images(2, 2, 2, &[7; 8]));
    z.truncate(z.len() / 2);
    fs::write(&p, z).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("train-labels-idx1-ubyte"), "{e}");
    fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[0, 1])).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::Decode { .. }), "{e}");
    one_line_naming(&e, &p);
}

#[test]
fn empty_unknown_and_missing_folders() {
    let d = tmp("empty");
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::EmptyFolder { .. }), "{e}");
    one_line_naming(&e, &d);
    fs::write(d.join("notes.txt"), "hello").unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::UnsupportedFormat { .. }), "{e}");
    one_line_naming(&e, &d);
    let gone = d.join("nope");
    let e = Dataset::load(gone.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }), "{e}");
    one_line_naming(&e, &gone);
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10

fn cifar_record(label: u8, seed: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..3072u32).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(i.div_euclid(1024) as u8)));
    r
}

#[test]
fn cifar10_two_records() {
    let d = tmp("cifar");
    let root = d.join("cifar-10-batches-bin");
    fs::create_dir_all(&root).unwrap();
    let mut batch = cifar_record(3, 1);
    batch.extend(cifar_record(9, 5));
    fs::write(root.join("data_batch_1.bin"), &batch).unwrap();
    fs::write(root.join("test_batch.bin"), cifar_record(0, 2)).unwrap();
    assert_eq!(detect_format(&d).unwrap(), Format::Cifar10);
    let ds = Dataset::load(d.to_str().unwrap(), None).unwrap();
    assert_eq!(ds.format, Format::Cifar10);
    assert_eq!(ds.train.len(), 2);
    assert_eq!(ds.train.image_shape(), [3, 32, 32]);
    assert_eq!(ds.train.labels(), &[3, 9]);
    assert_eq!(ds.train.class_names()[3], "cat");
    assert_eq!(ds.test().unwrap().labels(), &[0]);
    // Record bytes 1..3073 are the [3, 32, 32] image as stored (R plane, G plane, B plane).
    let (img, _) = ds.train.get(1).unwrap();
    let rec = cifar_record(9, 5);
    for i in [0usize, 1, 1023, 1024, 2048, 3071] {
        assert_eq!(img[i], rec[1 + i] as f32 / 255.0, "value {i}");
    }
    let (x, y) = ds.train.batch(&[1, 0], &Device::flex());
    assert_eq!(x.dims(), [2, 3, 32, 32]);
    assert_eq!(y.into_data().try_to_vec_as::<i64>().unwrap(), vec![9, 3]);
    // batches.meta.txt overrides the names.
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    fs::write(root.join("batches.meta.txt"), names.join("\n") + "\n\n").unwrap();
    let ds = Dataset::load(root.to_str().unwrap(), Some(Format::Cifar10)).unwrap();
    assert_eq!(ds.train.class_names(), &names[..]);
}

#[test]
fn cifar10_truncated_and_bad_label() {
    let d = tmp("cifar-bad");
    let p = d.join("data_batch_1.bin");
    let mut batch = cifar_record(3, 1);
    batch.extend(&cifar_record(4, 1)[..1000]);
    fs::write(&p, &batch).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::Truncated { expected: 6146, found: 4073, .. }), "{e}");
    one_line_naming(&e, &p);
    fs::write(&p, cifar_record(10, 1)).unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::BadLabel { label: 10, limit: 10, index: 0, .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// image folders

#[test]
fn image_folder_gray_pngs() {
    let d = tmp("folder-gray");
    for c in ["b_dog", "a_cat"] {
        fs::create_dir_all(d.join(c)).unwrap();
    }
    // 3 wide, 2 high.
    write_png(&d.join("a_cat/1.png"), 3, 2, png::ColorType::Grayscale, &[0, 51, 102, 153, 204, 255]);
    write_png(&d.join("a_cat/0.PNG"), 3, 2, png::ColorType::Grayscale, &[255; 6]);
    // Gray + alpha: alpha is dropped.
    write_png(
        &d.join("b_dog/x.png"),
        3,
        2,
        png::ColorType::GrayscaleAlpha,
        &[10, 0, 20, 9, 30, 9, 40, 9, 50, 9, 60, 9],
    );
    fs::write(d.join("b_dog/readme.txt"), "ignored").unwrap();
    assert_eq!(detect_format(&d).unwrap(), Format::ImageFolder);
    let ds = Dataset::load(d.to_str().unwrap(), None).unwrap();
    assert_eq!(ds.format, Format::ImageFolder);
    assert!(ds.test.is_none());
    assert!(matches!(ds.test(), Err(DataError::MissingFile { .. })));
    let t = &ds.train;
    assert_eq!(t.class_names(), &["a_cat".to_string(), "b_dog".to_string()]);
    assert_eq!(t.image_shape(), [1, 2, 3]);
    assert_eq!(t.labels(), &[0, 0, 1]); // sorted: 0.PNG, 1.png, then b_dog/x.png
    assert_eq!(t.get(0).unwrap().0, vec![1.0; 6]);
    assert_eq!(t.get(1).unwrap().0, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    let dog: Vec<f32> = [10u8, 20, 30, 40, 50, 60].iter().map(|&v| v as f32 / 255.0).collect();
    assert_eq!(t.get(2).unwrap().0, dog);
}

#[test]
fn image_folder_mixed_colour_with_jpeg_and_split_folders() {
    let d = tmp("folder-rgb");
    for s in ["train/red", "train/gray", "test/gray"] {
        fs::create_dir_all(d.join(s)).unwrap();
    }
    // An RGB PNG and an RGB JPEG (made with PIL: 8x8, (200, 30, 90), quality 95, 4:4:4).
    let rgb: Vec<u8> = (0..64).flat_map(|_| [200u8, 30, 90]).collect();
    write_png(&d.join("train/red/a.png"), 8, 8, png::ColorType::Rgb, &rgb);
    fs::write(d.join("train/red/b.jpg"), RGB_JPEG).unwrap();
    // A gray PNG and a gray JPEG (PIL: 8x8, level 77): replicated to 3 channels.
    write_png(&d.join("train/gray/c.png"), 8, 8, png::ColorType::Grayscale, &[77; 64]);
    fs::write(d.join("train/gray/d.jpeg"), GRAY_JPEG).unwrap();
    write_png(&d.join("test/gray/e.png"), 8, 8, png::ColorType::Grayscale, &[128; 64]);
    let ds = Dataset::load(d.to_str().unwrap(), None).unwrap();
    let t = &ds.train;
    assert_eq!(t.class_names(), &["gray".to_string(), "red".to_string()]);
    assert_eq!(t.image_shape(), [3, 8, 8]);
    assert_eq!(t.labels(), &[0, 0, 1, 1]);
    let close = |img: &[f32], rgb: [f32; 3], tol: f32| {
        for c in 0..3 {
            for &v in &img[c * 64..(c + 1) * 64] {
                assert!((v * 255.0 - rgb[c]).abs() <= tol, "channel {c}: {} vs {}", v * 255.0, rgb[c]);
            }
        }
    };
    close(&t.get(0).unwrap().0, [77.0; 3], 0.0);
    close(&t.get(1).unwrap().0, [77.0; 3], 2.0); // JPEG: PIL decodes 77 exactly
    close(&t.get(2).unwrap().0, [200.0, 30.0, 90.0], 0.0);
    close(&t.get(3).unwrap().0, [200.0, 31.0, 90.0], 3.0); // PIL decodes (200, 31, 90)
    // The test split takes train's classes and channel count (gray -> 3 channels).
    let test = ds.test().unwrap();
    assert_eq!(test.image_shape(), [3, 8, 8]);
    assert_eq!(test.labels(), &[0]);
    assert_eq!(test.get(0).unwrap().0, vec![128.0 / 255.0; 192]);
    // A test class that train lacks is an error naming the folder.
    fs::create_dir_all(d.join("test/blue")).unwrap();
    write_png(&d.join("test/blue/f.png"), 8, 8, png::ColorType::Grayscale, &[1; 64]);
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::UnsupportedFormat { .. }), "{e}");
    one_line_naming(&e, &d.join("test/blue"));
    assert_eq!(test.split(), Split::Test);
}

#[test]
fn image_folder_errors() {
    let d = tmp("folder-err");
    fs::create_dir_all(d.join("a")).unwrap();
    fs::create_dir_all(d.join("b")).unwrap();
    write_png(&d.join("a/1.png"), 4, 4, png::ColorType::Grayscale, &[0; 16]);
    // A class folder without images.
    let e = Dataset::load(d.to_str().unwrap(), Some(Format::ImageFolder)).unwrap_err();
    assert!(matches!(e, DataError::NoImages { .. }), "{e}");
    one_line_naming(&e, &d.join("b"));
    // An image of another size, named in the error.
    let odd = d.join("b/odd.png");
    write_png(&odd, 5, 4, png::ColorType::Grayscale, &[0; 20]);
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::SizeMismatch { found_w: 5, found_h: 4, width: 4, height: 4, .. }), "{e}");
    one_line_naming(&e, &odd);
    // A corrupt PNG.
    fs::write(&odd, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::Decode { .. }), "{e}");
    one_line_naming(&e, &odd);
    // A .jpg that is neither format.
    fs::remove_file(&odd).unwrap();
    let fake = d.join("b/fake.jpg");
    fs::write(&fake, b"GIF89a....").unwrap();
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(e, DataError::Decode { .. }), "{e}");
    one_line_naming(&e, &fake);
    // A truncated JPEG.
    fs::write(&fake, &RGB_JPEG[..RGB_JPEG.len() / 3]).unwrap();
    // (Decode error, or — if the decoder fills the missing blocks — a size mismatch: an 8x8
    // image among 4x4 ones. Either names the file.)
    let e = Dataset::load(d.to_str().unwrap(), None).unwrap_err();
    one_line_naming(&e, &fake);
}

#[test]
fn dataset_new_checks_its_parts() {
    use kiln_data::Pixels;
    let names = vec!["a".to_string(), "b".to_string()];
    assert!(ImageDataset::new(Pixels::U8(vec![0; 8]), vec![0, 1], [1, 2, 2], names.clone(), Split::Train).is_ok());
    assert!(ImageDataset::new(Pixels::U8(vec![0; 7]), vec![0, 1], [1, 2, 2], names.clone(), Split::Train).is_err());
    assert!(ImageDataset::new(Pixels::U8(vec![0; 8]), vec![0, 2], [1, 2, 2], names.clone(), Split::Train).is_err());
    assert!(ImageDataset::new(Pixels::F32(vec![]), vec![], [0, 2, 2], names, Split::Train).is_err());
}

const RGB_JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04, 0x04, 0x03, 0x04, 0x06, 0x05, 0x06, 0x06, 0x06, 0x05,
    0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06, 0x07, 0x09, 0x07, 0x06, 0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x06, 0x08, 0x0b, 0x0c, 0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xdb, 0x00, 0x43, 0x01, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x05, 0x03, 0x03, 0x05, 0x0a, 0x07, 0x06, 0x07, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x08, 0x00, 0x08, 0x03, 0x01, 0x11, 0x00,
    0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4, 0x00, 0x1f, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0xff, 0xc4, 0x00, 0xb5, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00,
    0x00, 0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62,
    0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37,
    0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a,
    0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85,
    0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6,
    0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
    0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
    0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xc4, 0x00, 0x1f, 0x01, 0x00,
    0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03,
    0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff, 0xc4, 0x00, 0xb5, 0x11, 0x00, 0x02, 0x01, 0x02, 0x04, 0x04,
    0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01, 0x02, 0x77, 0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31,
    0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09,
    0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a,
    0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a,
    0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75,
    0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96,
    0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
    0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8,
    0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9,
    0xfa, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3f, 0x00, 0xf9, 0x7e, 0xb4, 0x3f,
    0xd4, 0x03, 0xff, 0xd9,
];
const GRAY_JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04, 0x04, 0x03, 0x04, 0x06, 0x05, 0x06, 0x06, 0x06, 0x05,
    0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06, 0x07, 0x09, 0x07, 0x06, 0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x06, 0x08, 0x0b, 0x0c, 0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00,
    0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00, 0xff, 0xc4, 0x00, 0x1f, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
    0x0a, 0x0b, 0xff, 0xc4, 0x00, 0xb5, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04,
    0x00, 0x00, 0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
    0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33,
    0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36,
    0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59,
    0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84,
    0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6,
    0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6,
    0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x08, 0x01,
    0x01, 0x00, 0x00, 0x3f, 0x00, 0xf8, 0xce, 0xbf, 0xff, 0xd9,
];

/// A PNG / JPEG whose header claims more pixels than its bytes could ever decode to is refused
/// before the decoder allocates the claim.
#[test]
fn image_headers_that_claim_more_than_the_file_holds_are_refused_before_allocating() {
    let d = tmp("huge-claims");
    fs::create_dir_all(&d).unwrap();
    // PNG: a real 16x16 grey image whose IHDR is rewritten to 50000x50000 (CRC fixed), which
    // would be a 2.5 GB buffer from a file of 100 bytes.
    let p = d.join("a.png");
    write_png(&p, 16, 16, png::ColorType::Grayscale, &[7; 256]);
    let mut b = fs::read(&p).unwrap();
    assert_eq!(&b[12..16], b"IHDR");
    b[16..20].copy_from_slice(&50_000u32.to_be_bytes());
    b[20..24].copy_from_slice(&50_000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&b[12..29]);
    b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    let e = kiln_data::folder::decode_image_bytes(&p, &b).unwrap_err();
    one_line_naming(&e, &p);
    let msg = e.to_string();
    assert!(
        msg.contains("50000x50000 image would decode to 2500000000 bytes") && msg.contains("the header is corrupt"),
        "{msg}"
    );
    // The same file with its real header decodes.
    let ok = kiln_data::folder::decode_image_bytes(&p, &fs::read(&p).unwrap()).unwrap();
    assert_eq!((ok.width, ok.height, ok.channels), (16, 16, 1));

    // JPEG: the fuzz corpus's 28x28 baseline digit with its SOF0 rewritten to 16000x16000 (decoded as RGB: 768 MB).
    let j = d.join("a.jpg");
    let mut b = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-fuzz/corpus/digit-baseline.jpg")).unwrap();
    let sof = b.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    b[sof + 5..sof + 7].copy_from_slice(&16_000u16.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&16_000u16.to_be_bytes());
    let e = kiln_data::folder::decode_image_bytes(&j, &b).unwrap_err();
    one_line_naming(&e, &j);
    assert!(e.to_string().contains("16000x16000 image would decode to 768000000 bytes"), "{e}");
    let _ = fs::remove_dir_all(&d);
}
