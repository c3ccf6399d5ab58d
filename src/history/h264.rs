//! What the muxers need to know about H.264: the sequence parameter set (size, profile, level,
//! chroma format, sample aspect ratio), the `avcC` decoder configuration record, and the
//! conversion of an Annex-B access unit to length-prefixed AVC samples.
//!
//! Spec: ITU-T H.264 §7.3.2.1.1 (SPS syntax), §7.4.2.1.1 (semantics, cropping), E.1.1 (VUI);
//! ISO/IEC 14496-15 §5.3.3 (`AVCDecoderConfigurationRecord`); RFC 6381 §3.3 (codec strings).
//! Pure functions over bytes; never panics on any input.

use crate::segment::annexb::{nal, nal_type, nal_units, unescape_rbsp};

/// Why an SPS could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpsError {
    /// Not an SPS NAL (type 7).
    #[error("not an SPS NAL unit")]
    NotSps,
    /// The bits ran out before the fields vigil needs.
    #[error("SPS truncated")]
    Truncated,
    /// A field is outside what the spec allows.
    #[error("SPS field {0} out of range")]
    OutOfRange(&'static str),
}

/// The fields of a sequence parameter set that a container needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    /// `profile_idc` (66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// The byte of `constraint_set0..5_flag` + reserved bits, as in the SPS.
    pub constraint_flags: u8,
    /// `level_idc` (30 = level 3.0).
    pub level_idc: u8,
    /// `chroma_format_idc` (1 = 4:2:0).
    pub chroma_format_idc: u8,
    /// Luma bit depth (8 for almost everything).
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// Displayed width in pixels (after cropping).
    pub width: u16,
    /// Displayed height in pixels (after cropping).
    pub height: u16,
    /// Sample (pixel) aspect ratio from the VUI, when given and not 1:1.
    pub pixel_aspect: Option<(u16, u16)>,
}

impl SpsInfo {
    /// The RFC 6381 codec string, e.g. `avc1.42C01E` (for MSE `addSourceBuffer`).
    pub fn codec(&self) -> String {
        format!("avc1.{:02X}{:02X}{:02X}", self.profile_idc, self.constraint_flags, self.level_idc)
    }

    /// Profiles whose SPS carries chroma format and bit depth (§7.3.2.1.1), and whose `avcC`
    /// carries them too.
    fn is_high(profile_idc: u8) -> bool {
        matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135)
    }
}

/// A bit reader over an RBSP (emulation prevention already removed).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = *self.data.get(self.pos / 8).ok_or(SpsError::Truncated)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    fn flag(&mut self) -> Result<bool, SpsError> {
        Ok(self.bit()? == 1)
    }

    /// Unsigned Exp-Golomb (§9.1), limited to 32-bit values.
    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::OutOfRange("exp-golomb"));
            }
        }
        let rest = self.bits(zeros)?;
        // (1 << 31) - 1 + rest fits in u64; values past u32 are rejected.
        u32::try_from((1u64 << zeros) - 1 + u64::from(rest)).map_err(|_| SpsError::OutOfRange("exp-golomb"))
    }

    /// Signed Exp-Golomb (§9.1.1).
    fn se(&mut self) -> Result<i64, SpsError> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }

    fn ue_max(&mut self, max: u32, field: &'static str) -> Result<u32, SpsError> {
        let v = self.ue()?;
        if v > max {
            return Err(SpsError::OutOfRange(field));
        }
        Ok(v)
    }
}

/// Table E-1: `aspect_ratio_idc` 1..=16.
const SAR_TABLE: [(u16, u16); 17] = [
    (0, 0),
    (1, 1),
    (12, 11),
    (10, 11),
    (16, 11),
    (40, 33),
    (24, 11),
    (20, 11),
    (32, 11),
    (80, 33),
    (18, 11),
    (15, 11),
    (64, 33),
    (160, 99),
    (4, 3),
    (3, 2),
    (2, 1),
];

/// Parses an SPS NAL unit (header byte included, no start code).
pub fn parse_sps(nal_unit: &[u8]) -> Result<SpsInfo, SpsError> {
    if nal_type(nal_unit) != nal::SPS {
        return Err(SpsError::NotSps);
    }
    let rbsp = unescape_rbsp(nal_unit.get(1..).unwrap_or_default());
    let mut r = Bits::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue_max(31, "seq_parameter_set_id")?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma = 8;
    let mut bit_depth_chroma = 8;
    if SpsInfo::is_high(profile_idc) {
        chroma_format_idc = r.ue_max(3, "chroma_format_idc")?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        bit_depth_luma = 8 + r.ue_max(6, "bit_depth_luma_minus8")?;
        bit_depth_chroma = 8 + r.ue_max(6, "bit_depth_chroma_minus8")?;
        r.flag()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            // seq_scaling_matrix_present_flag: skip the lists (§7.3.2.1.1.1).
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            let delta = r.se()?;
                            if !(-128..=127).contains(&delta) {
                                return Err(SpsError::OutOfRange("delta_scale"));
                            }
                            next = (last + delta).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue_max(12, "log2_max_frame_num_minus4")?;
    match r.ue_max(2, "pic_order_cnt_type")? {
        0 => {
            r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")?;
        }
        1 => {
            r.flag()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let n = r.ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle")?;
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue_max(1023, "pic_width_in_mbs_minus1")?) + 1;
    let height_map_units = u64::from(r.ue_max(1023, "pic_height_in_map_units_minus1")?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        crop_l = u64::from(r.ue()?);
        crop_r = u64::from(r.ue()?);
        crop_t = u64::from(r.ue()?);
        crop_b = u64::from(r.ue()?);
    }
    let mut pixel_aspect = None;
    // VUI is optional for our purposes: a truncated VUI does not make the SPS unusable.
    if r.flag().unwrap_or(false) && r.flag().unwrap_or(false) {
        // vui_parameters_present_flag, aspect_ratio_info_present_flag
        if let Ok(idc) = r.bits(8) {
            let sar = match idc {
                255 => match (r.bits(16), r.bits(16)) {
                    (Ok(w), Ok(h)) => Some((w as u16, h as u16)),
                    _ => None,
                },
                i => SAR_TABLE.get(i as usize).copied(),
            };
            pixel_aspect = sar.filter(|&(w, h)| w != 0 && h != 0 && w != h);
        }
    }

    // §7.4.2.1.1: ChromaArrayType, CropUnitX/Y.
    let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
    let (sub_w, sub_h) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (crop_unit_x, crop_unit_y) =
        if chroma_array_type == 0 { (1, field_factor) } else { (sub_w, sub_h * field_factor) };
    let coded_w = width_mbs * 16;
    let coded_h = height_map_units * 16 * field_factor;
    let cut_w = crop_l.saturating_add(crop_r).saturating_mul(crop_unit_x);
    let cut_h = crop_t.saturating_add(crop_b).saturating_mul(crop_unit_y);
    if cut_w >= coded_w || cut_h >= coded_h {
        return Err(SpsError::OutOfRange("frame_crop"));
    }
    let width = u16::try_from(coded_w - cut_w).map_err(|_| SpsError::OutOfRange("width"))?;
    let height = u16::try_from(coded_h - cut_h).map_err(|_| SpsError::OutOfRange("height"))?;
    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma: bit_depth_luma as u8,
        bit_depth_chroma: bit_depth_chroma as u8,
        width,
        height,
        pixel_aspect,
    })
}

/// One SPS and one PPS (NAL units without start codes) and what the SPS says: everything a
/// sample entry (`avc1` + `avcC`) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSets {
    sps: Vec<u8>,
    pps: Vec<u8>,
    info: SpsInfo,
}

impl ParamSets {
    /// Checks and parses an SPS/PPS pair.
    pub fn new(sps: &[u8], pps: &[u8]) -> Result<Self, SpsError> {
        let info = parse_sps(sps)?;
        if u16::try_from(sps.len()).is_err() {
            return Err(SpsError::OutOfRange("SPS length"));
        }
        if nal_type(pps) != nal::PPS || pps.len() < 2 || u16::try_from(pps.len()).is_err() {
            return Err(SpsError::OutOfRange("PPS"));
        }
        Ok(Self { sps: sps.to_vec(), pps: pps.to_vec(), info })
    }

    /// The first SPS and PPS of an Annex-B access unit (vigil puts them before every IDR).
    /// `None` when the AU has either missing.
    pub fn from_annexb(au: &[u8]) -> Option<Result<Self, SpsError>> {
        let sps = nal_units(au).find(|n| nal_type(n) == nal::SPS)?;
        let pps = nal_units(au).find(|n| nal_type(n) == nal::PPS)?;
        Some(Self::new(sps, pps))
    }

    /// The SPS NAL unit.
    pub fn sps(&self) -> &[u8] {
        &self.sps
    }

    /// The PPS NAL unit.
    pub fn pps(&self) -> &[u8] {
        &self.pps
    }

    /// What the SPS says.
    pub fn info(&self) -> &SpsInfo {
        &self.info
    }

    /// The `AVCDecoderConfigurationRecord` (the body of an `avcC` box), with 4-byte NAL
    /// lengths.
    pub fn avcc(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(11 + self.sps.len() + self.pps.len() + 4);
        v.push(1); // configurationVersion
        v.extend_from_slice(&self.sps[1..4]); // profile, compatibility, level (new() checked len)
        v.push(0xfc | 3); // reserved 6 bits, lengthSizeMinusOne = 3
        v.push(0xe0 | 1); // reserved 3 bits, numOfSequenceParameterSets = 1
        v.extend_from_slice(&(self.sps.len() as u16).to_be_bytes()); // new() checked it fits
        v.extend_from_slice(&self.sps);
        v.push(1); // numOfPictureParameterSets
        v.extend_from_slice(&(self.pps.len() as u16).to_be_bytes());
        v.extend_from_slice(&self.pps);
        if SpsInfo::is_high(self.info.profile_idc) {
            v.push(0xfc | self.info.chroma_format_idc);
            v.push(0xf8 | (self.info.bit_depth_luma - 8));
            v.push(0xf8 | (self.info.bit_depth_chroma - 8));
            v.push(0); // numOfSequenceParameterSetExt
        }
        v
    }
}

/// The size of an Annex-B access unit once converted by [`annexb_to_avc`]. For an AU that
/// keeps the segment contract (4-byte start codes, no trailing zero bytes) it equals the
/// Annex-B length, which is what lets an export be planned from the `.idx` alone.
pub fn avc_size(au: &[u8]) -> u64 {
    nal_units(au).map(|n| 4 + n.len() as u64).sum()
}

/// Appends an Annex-B access unit to `out` as length-prefixed NAL units (4-byte big-endian
/// lengths, ISO/IEC 14496-15 §5.3.2). Every NAL is kept (AUD, SEI and in-band SPS/PPS too:
/// they are legal in `avc1` samples and keep the size equal to the Annex-B size). Returns the
/// number of bytes appended.
pub fn annexb_to_avc(au: &[u8], out: &mut Vec<u8>) -> u64 {
    let before = out.len();
    for n in nal_units(au) {
        // An AU is at most a few tens of MiB (the `.idx` limits it), so a NAL fits in u32.
        out.extend_from_slice(&u32::try_from(n.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(n);
    }
    (out.len() - before) as u64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// x264 constrained baseline 640x360 level 3.0 (from `vigil capture`).
    pub(crate) const SPS_640X360: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0xc0, 0x5a, 0x83, 0x03, 0x03, 0x52, 0x80, 0x00, 0x00,
        0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x47, 0x8b, 0x17, 0x50,
    ];
    pub(crate) const PPS_640X360: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    /// x264 high 1920x1080 level 4.0 (frame cropping 1088 → 1080).
    const SPS_HIGH_1080: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x5a, 0x80, 0x80, 0x80, 0xa0, 0x00,
        0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x91, 0xe3, 0x06, 0x32, 0xc0,
    ];
    /// x264 high 4:4:4 1918x1078 (cropping in 1-pixel units).
    const SPS_444: &[u8] = &[
        0x67, 0xf4, 0x00, 0x28, 0x91, 0x9b, 0x28, 0x0f, 0x00, 0x44, 0xf7, 0x17, 0x80, 0xb5, 0x01, 0x01, 0x01, 0x40,
        0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x23, 0xc6, 0x0c, 0x65, 0x80,
    ];

    #[test]
    fn parses_real_sps() {
        let s = parse_sps(SPS_640X360).unwrap();
        assert_eq!((s.width, s.height, s.profile_idc, s.constraint_flags, s.level_idc), (640, 360, 66, 0xc0, 30));
        assert_eq!(s.codec(), "avc1.42C01E");
        assert_eq!(s.pixel_aspect, None);
        let h = parse_sps(SPS_HIGH_1080).unwrap();
        assert_eq!((h.width, h.height, h.profile_idc, h.level_idc, h.chroma_format_idc), (1920, 1080, 100, 40, 1));
        assert_eq!(h.codec(), "avc1.640028");
        let f = parse_sps(SPS_444).unwrap();
        assert_eq!((f.width, f.height, f.chroma_format_idc, f.bit_depth_luma), (1918, 1078, 3, 8));
    }

    #[test]
    fn avcc_layout() {
        let p = ParamSets::new(SPS_640X360, PPS_640X360).unwrap();
        let a = p.avcc();
        assert_eq!(&a[..6], &[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1]);
        assert_eq!(a.len(), 6 + 2 + SPS_640X360.len() + 1 + 2 + PPS_640X360.len());
        let high = ParamSets::new(SPS_HIGH_1080, &[0x68, 0xeb, 0xec, 0xb2, 0x2c]).unwrap();
        assert_eq!(&high.avcc()[high.avcc().len() - 4..], &[0xfd, 0xf8, 0xf8, 0]);
        assert!(ParamSets::new(PPS_640X360, PPS_640X360).is_err());
        assert!(ParamSets::new(SPS_640X360, &[0x68]).is_err());
    }

    #[test]
    fn conversion_keeps_contract_sizes() {
        let au = [&[0, 0, 0, 1, 9, 0xf0][..], &[0, 0, 0, 1, 0x65, 1, 2, 3]].concat();
        let mut out = Vec::new();
        assert_eq!(annexb_to_avc(&au, &mut out), au.len() as u64);
        assert_eq!(out, [0, 0, 0, 2, 9, 0xf0, 0, 0, 0, 4, 0x65, 1, 2, 3]);
        assert_eq!(avc_size(&au), au.len() as u64);
        // 3-byte start codes grow by one byte each.
        let three = [0, 0, 1, 0x65, 7];
        assert_eq!(avc_size(&three), 6);
    }

    #[test]
    fn hostile_sps_never_panics() {
        let mut seed = 0x9e37_79b9u32;
        for len in 0..200 {
            for _ in 0..20 {
                let mut b: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (seed >> 16) as u8
                    })
                    .collect();
                if let Some(first) = b.first_mut() {
                    *first = 0x67;
                }
                let _ = parse_sps(&b);
                let _ = ParamSets::new(&b, &b);
                let _ = ParamSets::from_annexb(&b);
            }
        }
        // Every truncation of a real SPS is an error or a value, never a panic.
        for n in 0..SPS_HIGH_1080.len() {
            let _ = parse_sps(&SPS_HIGH_1080[..n]);
        }
    }
}
