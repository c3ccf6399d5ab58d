//! A text view of an MP4 / fMP4 box tree (Moonfire's `view.mp4.txt`): one line per box with
//! its size and the fields vigil writes, long tables cut to their first entries, `mdat` as a
//! length and a hash. Used by the golden tests and handy when a player refuses a file.
//! Never panics: malformed input shows up as `<truncated>` or `<bad size>`.

use std::fmt::Write;

/// Boxes whose body is just more boxes.
const CONTAINERS: [&[u8; 4]; 11] =
    [b"moov", b"trak", b"edts", b"mdia", b"minf", b"dinf", b"stbl", b"mvex", b"moof", b"traf", b"udta"];

/// How many entries of a table are shown.
const SHOW: usize = 8;

/// The box tree of `bytes` as text.
pub fn dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    boxes(bytes, 0, &mut out);
    out
}

/// Deeper nesting than any real file is shown as one line (and bounds recursion).
const MAX_DEPTH: usize = 16;

fn boxes(mut b: &[u8], depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    if depth > MAX_DEPTH {
        let _ = writeln!(out, "{indent}<too deep: {} bytes>", b.len());
        return;
    }
    while !b.is_empty() {
        if b.len() < 8 {
            let _ = writeln!(out, "{indent}<truncated: {} bytes>", b.len());
            return;
        }
        let mut size = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let fourcc = [b[4], b[5], b[6], b[7]];
        let mut header = 8usize;
        if size == 1 {
            match b.get(8..16) {
                Some(l) => {
                    size = u64::from_be_bytes([l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]]);
                    header = 16;
                }
                None => {
                    let _ = writeln!(out, "{indent}<truncated largesize>");
                    return;
                }
            }
        } else if size == 0 {
            size = b.len() as u64; // to the end of the file
        }
        let name = String::from_utf8_lossy(&fourcc).into_owned();
        if size < header as u64 || size > b.len() as u64 {
            let _ = writeln!(out, "{indent}{name} <bad size {size}, {} bytes left>", b.len());
            return;
        }
        let (this, rest) = b.split_at(size as usize);
        let body = &this[header..];
        let _ = write!(out, "{indent}{name} ({size})");
        if CONTAINERS.contains(&&fourcc) {
            out.push('\n');
            boxes(body, depth + 1, out);
        } else {
            match leaf(&fourcc, body, depth, out) {
                Some(()) => {}
                None => out.push_str(" <truncated>\n"),
            }
        }
        b = rest;
    }
}

/// A cursor over a box body; every read is checked.
struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
    /// A 32- or 64-bit field by box version.
    fn time(&mut self, v1: bool) -> Option<u64> {
        if v1 { self.u64() } else { self.u32().map(u64::from) }
    }
    fn full(&mut self) -> Option<(u8, u32)> {
        let v = self.u32()?;
        Some(((v >> 24) as u8, v & 0x00ff_ffff))
    }
    fn fourcc(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.take(4)?).into_owned())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `[a, b, c, ... (+n)]` of the first entries of a table.
fn list(n: u32, r: &mut R, mut item: impl FnMut(&mut R) -> Option<String>) -> Option<String> {
    let mut parts = Vec::new();
    for _ in 0..(n as usize).min(SHOW) {
        parts.push(item(r)?);
    }
    let more = (n as usize).saturating_sub(SHOW);
    Some(if more > 0 { format!("[{}, ... (+{more})]", parts.join(", ")) } else { format!("[{}]", parts.join(", ")) })
}

fn leaf(fourcc: &[u8; 4], body: &[u8], depth: usize, out: &mut String) -> Option<()> {
    let mut r = R(body);
    let line = match fourcc {
        b"ftyp" => {
            let major = r.fourcc()?;
            let minor = r.u32()?;
            let compat: Vec<String> = r.0.chunks_exact(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            format!("major={major} minor={minor} compatible={}", compat.join(","))
        }
        b"mvhd" | b"mdhd" => {
            let (v, _) = r.full()?;
            let v1 = v == 1;
            let created = r.time(v1)?;
            r.time(v1)?;
            let timescale = r.u32()?;
            let duration = r.time(v1)?;
            format!("v{v} created={created} timescale={timescale} duration={duration}")
        }
        b"tkhd" => {
            let (v, flags) = r.full()?;
            let v1 = v == 1;
            r.time(v1)?;
            r.time(v1)?;
            let id = r.u32()?;
            r.u32()?;
            let duration = r.time(v1)?;
            r.take(8 + 8 + 36)?;
            let w = r.u32()?;
            let h = r.u32()?;
            format!("v{v} flags={flags:#x} track={id} duration={duration} width={} height={}", w >> 16, h >> 16)
        }
        b"elst" => {
            let (v, _) = r.full()?;
            let n = r.u32()?;
            let entries = list(n, &mut r, |r| {
                let d = r.time(v == 1)?;
                let t = r.time(v == 1)?;
                let rate = r.u16()?;
                r.u16()?;
                Some(format!("duration={d} media_time={t} rate={rate}"))
            })?;
            format!("v{v} {entries}")
        }
        b"hdlr" => {
            r.full()?;
            r.u32()?;
            let t = r.fourcc()?;
            r.take(12)?;
            let name = String::from_utf8_lossy(r.0).trim_end_matches('\0').to_owned();
            format!("handler={t} name={name:?}")
        }
        b"stsd" | b"dref" => {
            r.full()?;
            let n = r.u32()?;
            let _ = writeln!(out, " entries={n}");
            boxes(r.0, depth + 1, out);
            return Some(());
        }
        b"avc1" => {
            r.take(6)?;
            let dri = r.u16()?;
            r.take(16)?;
            let w = r.u16()?;
            let h = r.u16()?;
            r.take(4 + 4 + 4 + 2 + 32 + 2 + 2)?;
            let _ = writeln!(out, " data_ref={dri} width={w} height={h}");
            boxes(r.0, depth + 1, out);
            return Some(());
        }
        b"avcC" => {
            let version = r.u8()?;
            let p = r.take(3)?;
            let len_size = (r.u8()? & 3) + 1;
            let nsps = r.u8()? & 0x1f;
            let mut sets = Vec::new();
            for _ in 0..nsps {
                let l = r.u16()? as usize;
                sets.push(format!("sps={}", hex(r.take(l)?)));
            }
            let npps = r.u8()?;
            for _ in 0..npps {
                let l = r.u16()? as usize;
                sets.push(format!("pps={}", hex(r.take(l)?)));
            }
            let ext = if r.0.is_empty() { String::new() } else { format!(" ext={}", hex(r.0)) };
            format!(
                "v{version} profile={} compat={:#04x} level={} nal_length={len_size} {}{ext}",
                p[0],
                p[1],
                p[2],
                sets.join(" ")
            )
        }
        b"pasp" => format!("h_spacing={} v_spacing={}", r.u32()?, r.u32()?),
        b"vmhd" | b"url " => {
            let (v, flags) = r.full()?;
            format!("v{v} flags={flags:#x}")
        }
        b"stts" => {
            r.full()?;
            let n = r.u32()?;
            let l = list(n, &mut r, |r| Some(format!("{}x{}", r.u32()?, r.u32()?)))?;
            format!("entries={n} {l}")
        }
        b"stss" | b"stco" => {
            r.full()?;
            let n = r.u32()?;
            let l = list(n, &mut r, |r| Some(r.u32()?.to_string()))?;
            format!("entries={n} {l}")
        }
        b"co64" => {
            r.full()?;
            let n = r.u32()?;
            let l = list(n, &mut r, |r| Some(r.u64()?.to_string()))?;
            format!("entries={n} {l}")
        }
        b"stsz" => {
            r.full()?;
            let fixed = r.u32()?;
            let n = r.u32()?;
            if fixed != 0 {
                format!("samples={n} size={fixed}")
            } else {
                let total: u64 =
                    r.0.chunks_exact(4)
                        .take(n as usize)
                        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                        .sum();
                let l = list(n, &mut r, |r| Some(r.u32()?.to_string()))?;
                format!("samples={n} total={total} {l}")
            }
        }
        b"stsc" => {
            r.full()?;
            let n = r.u32()?;
            let l = list(n, &mut r, |r| Some(format!("(chunk {} x{} entry {})", r.u32()?, r.u32()?, r.u32()?)))?;
            format!("entries={n} {l}")
        }
        b"trex" => {
            r.full()?;
            format!(
                "track={} sample_description={} duration={} size={} flags={:#010x}",
                r.u32()?,
                r.u32()?,
                r.u32()?,
                r.u32()?,
                r.u32()?
            )
        }
        b"mfhd" => {
            r.full()?;
            format!("sequence={}", r.u32()?)
        }
        b"tfhd" => {
            let (_, flags) = r.full()?;
            format!("flags={flags:#x} track={}", r.u32()?)
        }
        b"tfdt" => {
            let (v, _) = r.full()?;
            format!("v{v} base_decode_time={}", r.time(v == 1)?)
        }
        b"trun" => {
            let (v, flags) = r.full()?;
            let n = r.u32()?;
            let data_offset = if flags & 1 != 0 { format!(" data_offset={}", r.u32()? as i32) } else { String::new() };
            if flags & 4 != 0 {
                r.u32()?; // first_sample_flags
            }
            let l = list(n, &mut r, |r| {
                let mut f = Vec::new();
                if flags & 0x100 != 0 {
                    f.push(format!("d={}", r.u32()?));
                }
                if flags & 0x200 != 0 {
                    f.push(format!("s={}", r.u32()?));
                }
                if flags & 0x400 != 0 {
                    f.push(format!("f={:#x}", r.u32()?));
                }
                if flags & 0x800 != 0 {
                    f.push(format!("c={}", r.u32()?));
                }
                Some(f.join(" "))
            })?;
            format!("v{v} flags={flags:#x} samples={n}{data_offset} {l}")
        }
        b"mdat" => format!("payload={} fnv64={:016x}", body.len(), fnv64(body)),
        _ => format!("{} bytes", body.len()),
    };
    let _ = writeln!(out, " {line}");
    Some(())
}

/// FNV-1a 64 (a stable fingerprint of `mdat` payloads in dumps).
fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_bytes_never_panic() {
        let mut seed = 0x1234_5678u32;
        for len in 0..400 {
            for _ in 0..10 {
                let mut b: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        [0u8, 0, 1, 8, 16, 0xff, (seed >> 16) as u8][(seed >> 28) as usize % 7]
                    })
                    .collect();
                // Plant plausible box names so the leaf parsers run too.
                let names: [&[u8; 4]; 12] = [
                    b"moov", b"trak", b"stsd", b"avc1", b"avcC", b"trun", b"stsz", b"elst", b"tkhd", b"ftyp", b"mvhd",
                    b"stsc",
                ];
                if b.len() >= 8 {
                    let n = names[(seed as usize) % names.len()];
                    b[4..8].copy_from_slice(n);
                    let size = (seed >> 3) as usize % (b.len() + 1);
                    b[0..4].copy_from_slice(&(size as u32).to_be_bytes());
                }
                let _ = dump(&b);
            }
        }
    }
}
