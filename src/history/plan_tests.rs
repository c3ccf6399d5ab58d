//! Tests of the export planner (the parent module, `plan.rs`); their AU and segment builders
//! are shared with other history tests.

use super::*;
use crate::history::h264::tests::{PPS_640X360, SPS_640X360};
use crate::segment::idx::FLAG_KEYFRAME;

/// Builds a contract AU: AUD, (SPS, PPS,) slice of `body` bytes.
pub(crate) fn au(key: bool, body: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 9, 0xf0];
    if key {
        for ps in [SPS_640X360, PPS_640X360] {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(ps);
        }
    }
    v.extend_from_slice(&[0, 0, 0, 1, if key { 0x65 } else { 0x41 }]);
    v.extend((0..body).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 0x10));
    v
}

/// Synthetic segments: `gops` GOPs of `gop` frames at 30 fps each, starting at `start_us`.
pub(crate) fn segment(dir: &str, start_us: i64, gops: usize, gop: usize, mem: &mut MemSource) -> SegmentInput {
    let data = PathBuf::from(format!("/{dir}/{start_us}.h264"));
    let mut bytes = Vec::new();
    let mut records = Vec::new();
    for n in 0..gops * gop {
        let key = n % gop == 0;
        let a = au(key, 20 + n % 7, n as u8);
        records.push(Record {
            offset: bytes.len() as u64,
            len: a.len() as u32,
            pts_us: start_us + (n as i64 * 1_000_000) / 30,
            flags: if key { FLAG_KEYFRAME } else { 0 },
        });
        bytes.extend_from_slice(&a);
    }
    mem.0.insert(data.clone(), bytes);
    SegmentInput { start_us, data, records }
}

const T0: i64 = 1_795_305_600_000_000;

#[test]
fn starts_at_keyframe_before_start_with_an_edit() {
    let mut mem = MemSource::default();
    let segs = vec![segment("c", T0, 2, 30, &mut mem), segment("c", T0 + 2_000_000, 2, 30, &mut mem)];
    // Start 0.5 s into the second GOP, end 0.5 s into the second segment.
    let p = Plan::build(&segs, T0 + 1_500_000..T0 + 2_500_000, &mem).unwrap();
    assert!(p.samples()[0].keyframe);
    assert_eq!(p.samples()[0].pts_us, T0 + 1_000_000);
    assert_eq!(p.skip_90k(), 45_000);
    // 1.0..2.5 s: 45 AUs (the one at 2.5 s is excluded).
    assert_eq!(p.samples().len(), 45);
    assert_eq!(p.segments().len(), 2);
    assert_eq!(p.entries().len(), 1);
    assert_eq!(p.duration_90k(), 90_000);
    assert_eq!(p.gops(), vec![0..30, 30..45]);
    // Contract AUs: sizes are the Annex-B lengths.
    assert!(p.samples().iter().all(|s| s.size == s.len));
    let mut out = Vec::new();
    p.read_samples(0..45, &mem, &mut out).unwrap();
    assert_eq!(out.len() as u64, p.samples().iter().map(|s| u64::from(s.size)).sum::<u64>());
}

#[test]
fn gaps_are_squeezed_and_errors_are_errors() {
    let mut mem = MemSource::default();
    let segs = vec![segment("g", T0, 1, 30, &mut mem), segment("g", T0 + 60_000_000, 1, 30, &mut mem)];
    let p = Plan::build(&segs, T0..T0 + 120_000_000, &mem).unwrap();
    assert_eq!(p.samples().len(), 60);
    assert!(p.samples().iter().all(|s| (3000..=3001).contains(&s.duration_90k)));
    // Starting inside the gap starts at the keyframe after it.
    let p = Plan::build(&segs, T0 + 30_000_000..T0 + 120_000_000, &mem).unwrap();
    assert_eq!((p.samples()[0].pts_us, p.skip_90k()), (T0 + 60_000_000, 0));
    assert!(matches!(Plan::build(&segs, T0 + 5..T0 + 5, &mem), Err(MuxError::EmptyRange { .. })));
    assert!(matches!(Plan::build(&segs, T0 - 10..T0 - 5, &mem), Err(MuxError::NoSamples)));
    assert!(matches!(Plan::build(&segs, T0 + 200_000_000..T0 + 300_000_000, &mem), Err(MuxError::NoSamples)));
    // Overlapping segments are refused.
    let overlap = vec![segs[1].clone(), segs[0].clone()];
    assert!(matches!(Plan::build(&overlap, T0..T0 + 1, &mem), Err(MuxError::Index { .. })));
    // A data file shorter than its index: an I/O error, not a panic.
    let mut short = mem.clone();
    short.0.get_mut(&segs[0].data).unwrap().truncate(10);
    assert!(matches!(Plan::build(&segs, T0..T0 + 1_000_000, &short), Err(MuxError::Io { .. })));
}

#[test]
fn a_start_in_a_gap_begins_at_the_next_runs_first_keyframe() {
    let mut mem = MemSource::default();
    // Run 1: [T0, T0 + 2 s); a 1 s gap (shorter than MAX_FRAME_GAP_US, longer than
    // RUN_GAP_US); run 2 from T0 + 3 s. GOPs of 1 s.
    let run2 = T0 + 3_000_000;
    let segs = vec![segment("r", T0, 2, 30, &mut mem), segment("r", run2, 2, 30, &mut mem)];
    for start in [run2 - 1_000, run2 - 1, T0 + 2_500_000, T0 + 2_000_000] {
        let p = Plan::build(&segs, start..run2 + 1_500_000, &mem).unwrap();
        let first = p.samples()[0];
        assert_eq!((first.pts_us, first.keyframe, p.skip_90k()), (run2, true, 0), "start {start}");
        assert_eq!(p.segments().len(), 1, "start {start}: nothing of run 1");
        assert_eq!(p.samples().len(), 45, "start {start}");
    }
    // From inside run 1 across the gap: run 1's last frame lasts one frame, not the gap.
    let p = Plan::build(&segs, T0 + 1_500_000..run2 + 500_000, &mem).unwrap();
    assert_eq!((p.samples()[0].pts_us, p.skip_90k()), (T0 + 1_000_000, 45_000));
    let last_of_run1 = p.samples().iter().rposition(|s| s.pts_us < run2).unwrap();
    assert!((3000..=3001).contains(&p.samples()[last_of_run1].duration_90k));
    assert_eq!(p.samples().len(), 45);
    assert!(p.media_duration_90k().abs_diff(45 * 3000) <= 2, "{}", p.media_duration_90k());
    // Segments of one run (no gap) still decode from the keyframe before the start.
    let cont = vec![segment("c2", T0, 2, 30, &mut mem), segment("c2", T0 + 2_000_000, 2, 30, &mut mem)];
    let p = Plan::build(&cont, T0 + 2_000_000 - 1..T0 + 2_500_000, &mem).unwrap();
    assert_eq!(p.samples()[0].pts_us, T0 + 1_000_000);
}

#[test]
fn three_byte_start_codes_are_scanned() {
    let mut mem = MemSource::default();
    let mut seg = segment("s", T0, 1, 10, &mut mem);
    // Rewrite the data with 3-byte start codes.
    let old = mem.0[&seg.data].clone();
    let mut new = Vec::new();
    for r in &mut seg.records {
        let au = &old[r.offset as usize..r.end() as usize];
        let mut a = Vec::new();
        for n in crate::segment::annexb::nal_units(au) {
            a.extend_from_slice(&[0, 0, 1]);
            a.extend_from_slice(n);
        }
        r.offset = new.len() as u64;
        r.len = a.len() as u32;
        new.extend_from_slice(&a);
    }
    mem.0.insert(seg.data.clone(), new);
    let p = Plan::build(&[seg], T0..T0 + 1_000_000, &mem).unwrap();
    assert!(p.samples().iter().all(|s| s.size > s.len));
    let mut out = Vec::new();
    p.read_samples(0..p.samples().len(), &mem, &mut out).unwrap();
    assert_eq!(out.len() as u64, p.samples().iter().map(|s| u64::from(s.size)).sum::<u64>());
}

#[test]
fn hostile_index_never_panics() {
    let mut mem = MemSource::default();
    let good = segment("h", T0, 2, 10, &mut mem);
    let mut seed = 0x2545_f491u32;
    let mut rnd = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        seed >> 8
    };
    for _ in 0..2000 {
        let mut s = good.clone();
        for _ in 0..3 {
            let i = rnd() as usize % s.records.len();
            let r = &mut s.records[i];
            match rnd() % 6 {
                0 => r.offset = u64::from(rnd()) << (rnd() % 40),
                1 => r.len = rnd(),
                2 => r.pts_us = i64::from(rnd()) - i64::from(rnd()) + T0,
                3 => r.flags = rnd(),
                4 => r.pts_us = [i64::MIN, i64::MAX, 0][rnd() as usize % 3],
                _ => r.offset = u64::MAX - u64::from(rnd() % 5),
            }
        }
        let a = T0 + i64::from(rnd() % 1_000_000) - 500_000;
        let b = a + i64::from(rnd() % 2_000_000);
        if let Ok(p) = Plan::build(&[s], a..b, &mem) {
            let mut out = Vec::new();
            let _ = p.read_samples(0..p.samples().len(), &mem, &mut out);
            let _ = p.gops();
        }
    }
}
