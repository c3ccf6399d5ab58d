//! ISO BMFF box writing: a growable buffer with size back-patching, and the boxes the
//! progressive MP4 ([`super::mp4`]) and the fMP4 ([`super::fmp4`]) share (`ftyp`, `mvhd`,
//! `tkhd`, `mdia` down to `stsd` with `avc1` + `avcC`).
//!
//! Spec: ISO/IEC 14496-12 (ISO base media file format) §4.2 (box header), §8;
//! ISO/IEC 14496-15 §5.4.2 (`avc1`).

use super::h264::ParamSets;

/// The timescale of every movie and media header vigil writes: 90 kHz, as RTP and Moonfire.
pub const TIMESCALE: u32 = 90_000;

/// Seconds from 1904-01-01 (the MP4 epoch) to 1970-01-01.
const MP4_EPOCH_OFFSET_S: i64 = 2_082_844_800;

/// MP4 time (seconds since 1904) of a wall-clock time in µs since the Unix epoch; 0 when
/// it would be negative.
pub fn mp4_time(us: i64) -> u64 {
    u64::try_from(us.div_euclid(1_000_000).saturating_add(MP4_EPOCH_OFFSET_S)).unwrap_or(0)
}

/// A buffer of boxes under construction.
#[derive(Debug, Default)]
pub struct BoxBuf {
    buf: Vec<u8>,
}

/// An open box: where its size field is.
#[must_use = "a box must be closed"]
pub struct Open(usize);

impl BoxBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The finished bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// Starts a box; its size is patched by [`BoxBuf::close`].
    pub fn open(&mut self, fourcc: &[u8; 4]) -> Open {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(fourcc);
        Open(at)
    }

    /// Starts a full box (version and flags).
    pub fn open_full(&mut self, fourcc: &[u8; 4], version: u8, flags: u32) -> Open {
        let o = self.open(fourcc);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        o
    }

    /// Ends a box, writing its size. Boxes built in memory are far below 4 GiB (the sample
    /// count is bounded by `plan::MAX_SAMPLES`, fragments by `fmp4::MAX_FRAGMENT_BYTES`);
    /// the `mdat` of a progressive file, which may be larger, is not built through here.
    pub fn close(&mut self, o: Open) {
        let size = u32::try_from(self.buf.len() - o.0).unwrap_or(u32::MAX);
        self.buf[o.0..o.0 + 4].copy_from_slice(&size.to_be_bytes());
    }

    /// Overwrites a u32 written earlier at `at` (used for `trun` data offsets).
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        if let Some(s) = self.buf.get_mut(at..at + 4) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// A u32 field, or a u64 one when the box is version 1.
    fn time(&mut self, v1: bool, v: u64) {
        if v1 {
            self.u64(v);
        } else {
            self.u32(v as u32); // callers choose v1 whenever a value exceeds u32
        }
    }
}

/// Whether any of the values needs a version-1 (64-bit) box.
fn needs_v1(values: &[u64]) -> bool {
    values.iter().any(|&v| v > u64::from(u32::MAX))
}

/// The unity matrix of `mvhd` and `tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `ftyp`.
pub fn ftyp(b: &mut BoxBuf, major: &[u8; 4], minor: u32, compatible: &[&[u8; 4]]) {
    let o = b.open(b"ftyp");
    b.bytes(major);
    b.u32(minor);
    for c in compatible {
        b.bytes(*c);
    }
    b.close(o);
}

/// `mvhd`: one video track (next track id 2).
pub fn mvhd(b: &mut BoxBuf, time: u64, duration: u64) {
    let v1 = needs_v1(&[time, duration]);
    let o = b.open_full(b"mvhd", u8::from(v1), 0);
    b.time(v1, time); // creation_time
    b.time(v1, time); // modification_time
    b.u32(TIMESCALE);
    b.time(v1, duration);
    b.u32(0x0001_0000); // rate 1.0
    b.u16(0x0100); // volume 1.0
    b.zeros(2 + 8); // reserved
    for m in MATRIX {
        b.u32(m);
    }
    b.zeros(24); // pre_defined
    b.u32(2); // next_track_ID
    b.close(o);
}

/// `tkhd` for track 1: enabled, in movie, in preview.
pub fn tkhd(b: &mut BoxBuf, time: u64, duration: u64, p: &ParamSets) {
    let v1 = needs_v1(&[time, duration]);
    let o = b.open_full(b"tkhd", u8::from(v1), 7);
    b.time(v1, time);
    b.time(v1, time);
    b.u32(1); // track_ID
    b.u32(0); // reserved
    b.time(v1, duration);
    b.zeros(8); // reserved
    b.u16(0); // layer
    b.u16(0); // alternate_group
    b.u16(0); // volume (video)
    b.u16(0); // reserved
    for m in MATRIX {
        b.u32(m);
    }
    // Presentation size, 16.16 fixed point, stretched by the pixel aspect ratio.
    let info = p.info();
    let mut width = u64::from(info.width) << 16;
    if let Some((h, v)) = info.pixel_aspect {
        width = width * u64::from(h) / u64::from(v);
    }
    b.u32(u32::try_from(width).unwrap_or(u32::MAX));
    b.u32(u32::from(info.height) << 16);
    b.close(o);
}

/// `elst` with one entry: show the media from `media_time` for `duration` (both 90 kHz).
pub fn edts(b: &mut BoxBuf, duration: u64, media_time: u64) {
    let e = b.open(b"edts");
    let v1 = needs_v1(&[duration, media_time]) || media_time > i32::MAX as u64;
    let o = b.open_full(b"elst", u8::from(v1), 0);
    b.u32(1); // entry_count
    b.time(v1, duration); // segment_duration (movie timescale)
    b.time(v1, media_time); // media_time (media timescale)
    b.u16(1); // media_rate_integer
    b.u16(0); // media_rate_fraction
    b.close(o);
    b.close(e);
}

/// `mdia` down to `stbl`; `stbl_tables` writes the sample tables that follow `stsd`.
pub fn mdia(b: &mut BoxBuf, time: u64, duration: u64, entries: &[ParamSets], stbl_tables: impl FnOnce(&mut BoxBuf)) {
    let mdia = b.open(b"mdia");
    let v1 = needs_v1(&[time, duration]);
    let o = b.open_full(b"mdhd", u8::from(v1), 0);
    b.time(v1, time);
    b.time(v1, time);
    b.u32(TIMESCALE);
    b.time(v1, duration);
    b.u16(0x55c4); // language "und" (ISO 639-2/T packed)
    b.u16(0); // pre_defined
    b.close(o);

    let o = b.open_full(b"hdlr", 0, 0);
    b.u32(0); // pre_defined
    b.bytes(b"vide");
    b.zeros(12); // reserved
    b.bytes(b"VideoHandler\0");
    b.close(o);

    let minf = b.open(b"minf");
    let o = b.open_full(b"vmhd", 0, 1);
    b.zeros(8); // graphicsmode, opcolor
    b.close(o);
    let dinf = b.open(b"dinf");
    let dref = b.open_full(b"dref", 0, 0);
    b.u32(1);
    let url = b.open_full(b"url ", 0, 1); // self-contained
    b.close(url);
    b.close(dref);
    b.close(dinf);

    let stbl = b.open(b"stbl");
    let stsd = b.open_full(b"stsd", 0, 0);
    b.u32(entries.len() as u32); // at most one entry per segment: bounded by MAX_SAMPLES
    for p in entries {
        avc1(b, p);
    }
    b.close(stsd);
    stbl_tables(b);
    b.close(stbl);
    b.close(minf);
    b.close(mdia);
}

/// An `avc1` sample entry with its `avcC` (and `pasp` for non-square pixels).
fn avc1(b: &mut BoxBuf, p: &ParamSets) {
    let info = p.info();
    let o = b.open(b"avc1");
    b.zeros(6); // reserved
    b.u16(1); // data_reference_index
    b.zeros(16); // pre_defined, reserved, pre_defined[3]
    b.u16(info.width);
    b.u16(info.height);
    b.u32(0x0048_0000); // horizresolution 72 dpi
    b.u32(0x0048_0000); // vertresolution
    b.u32(0); // reserved
    b.u16(1); // frame_count
    b.zeros(32); // compressorname
    b.u16(0x0018); // depth
    b.u16(0xffff); // pre_defined = -1
    let c = b.open(b"avcC");
    b.bytes(&p.avcc());
    b.close(c);
    if let Some((h, v)) = info.pixel_aspect {
        let a = b.open(b"pasp");
        b.u32(u32::from(h));
        b.u32(u32::from(v));
        b.close(a);
    }
    b.close(o);
}
