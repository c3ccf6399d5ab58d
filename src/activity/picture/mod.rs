//! The picture stage of motion detection: frame difference against a running average of
//! small grey pictures (e.g. 160 px wide, a few per second), with the shift of the whole
//! picture's brightness taken out (a cloud, a lamp, auto-exposure), a threshold above the
//! picture's own noise, and connected blobs: motion is a blob of at least `min_area` of the
//! picture outside the masks, seen in `CONFIRM` consecutive pictures.
//!
//! Sensor noise and compression noise change pixels everywhere a little, a slow change of
//! light changes all pixels together; neither makes a connected blob above the noise.

/// Pictures in a row with a blob before motion is confirmed (at 5 pictures/s: 0.4 s).
pub const CONFIRM: u32 = 2;

/// Default `sensitivity`.
pub const DEFAULT_SENSITIVITY: u8 = 50;
/// Default `min_area`.
pub const DEFAULT_MIN_AREA: f32 = 0.005;

/// Settings of one camera's detector.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionSettings {
    /// 1 (only large, strong changes) to 100 (the faintest); default 50.
    pub sensitivity: u8,
    /// Smallest blob that counts, as a fraction of the picture (default 0.005).
    pub min_area: f32,
    /// Polygons to ignore, corners as fractions of the width and height (0..=1).
    pub masks: Vec<Vec<(f32, f32)>>,
}

impl Default for MotionSettings {
    fn default() -> Self {
        Self { sensitivity: DEFAULT_SENSITIVITY, min_area: DEFAULT_MIN_AREA, masks: Vec::new() }
    }
}

/// Why settings were refused (the message names the field).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// The camera key (`motion_sensitivity`, `motion_min_area`, `motion_masks`).
    pub field: &'static str,
    /// Why, in one line.
    pub message: String,
}

impl MotionSettings {
    /// Checks ranges: sensitivity 1-100, min_area in (0, 1], masks of 3+ corners inside the
    /// picture.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |field, message: String| Err(SettingsError { field, message });
        if !(1..=100).contains(&self.sensitivity) {
            return bad("motion_sensitivity", format!("{} out of range 1-100", self.sensitivity));
        }
        if !(self.min_area > 0.0 && self.min_area <= 1.0) {
            return bad("motion_min_area", format!("{}: expected a fraction of the picture in (0, 1]", self.min_area));
        }
        for (i, m) in self.masks.iter().enumerate() {
            if m.len() < 3 {
                return bad("motion_masks", format!("polygon {i}: needs at least 3 corners, got {}", m.len()));
            }
            if let Some((x, y)) = m.iter().find(|(x, y)| !(0.0..=1.0).contains(x) || !(0.0..=1.0).contains(y)) {
                return bad("motion_masks", format!("polygon {i}: corner ({x}, {y}) is outside the picture (0-1)"));
            }
        }
        Ok(())
    }
}

/// What one picture showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The largest blob, as a fraction of the unmasked picture (0 when none).
    pub score: f32,
    /// A blob of at least `min_area` in this picture.
    pub blob: bool,
    /// Motion confirmed (a blob in `CONFIRM` pictures in a row).
    pub motion: bool,
}

/// One camera's picture stage.
#[derive(Debug)]
pub struct PictureDetector {
    settings: MotionSettings,
    width: usize,
    height: usize,
    /// Running average, in 1/16 grey levels.
    average: Vec<i32>,
    /// Each pixel's usual difference from the average (1/16 grey levels): high where the
    /// picture is always changing (a snowy test pattern, water, leaves), so that only a change
    /// well beyond it counts there.
    deviation: Vec<i32>,
    /// Pixels to look at (outside every mask).
    unmasked: Vec<bool>,
    unmasked_count: usize,
    seen: u64,
    in_a_row: u32,
}

/// How fast the average follows the picture: 1/8 per picture (at 5/s, ~1.6 s).
const FOLLOW_SHIFT: i32 = 3;
/// Pictures before the average is trusted.
const WARM_UP: u64 = 4;
/// A pixel counts as changed only beyond this many times its usual deviation (where that is
/// above the picture's threshold: a region that is always changing).
const DEVIATION_K: i32 = 3;
/// How fast a pixel's usual deviation follows, in pictures without a blob: 1/32 per picture.
/// Pictures with a blob teach it nothing, so motion that stays in one place stays motion.
const DEVIATION_FOLLOW_SHIFT: i32 = 5;

impl PictureDetector {
    /// A detector with `settings` (validated by the caller).
    pub fn new(settings: MotionSettings) -> Self {
        Self {
            settings,
            width: 0,
            height: 0,
            average: Vec::new(),
            deviation: Vec::new(),
            unmasked: Vec::new(),
            unmasked_count: 0,
            seen: 0,
            in_a_row: 0,
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &MotionSettings {
        &self.settings
    }

    /// Looks at one grey picture (`width` × `height`, one byte per pixel, rows packed). A
    /// change of size starts over.
    pub fn observe(&mut self, grey: &[u8], width: usize, height: usize) -> Verdict {
        let none = Verdict { score: 0.0, blob: false, motion: false };
        if width == 0 || height == 0 || grey.len() < width * height {
            return none;
        }
        if (width, height) != (self.width, self.height) {
            self.reset(width, height);
        }
        let grey = &grey[..width * height];
        self.seen += 1;
        if self.seen == 1 {
            for (a, &p) in self.average.iter_mut().zip(grey) {
                *a = i32::from(p) << 4;
            }
            return none;
        }
        // The whole picture's brightness shift, taken out of every pixel's difference.
        let (mut sum, mut n) = (0i64, 0i64);
        for ((&p, &a), &m) in grey.iter().zip(&self.average).zip(&self.unmasked) {
            if m {
                sum += i64::from((i32::from(p) << 4) - a);
                n += 1;
            }
        }
        let shift = if n > 0 { (sum / n) as i32 } else { 0 };
        // Per-pixel differences (in 1/16 grey levels) and their histogram in grey levels, for
        // the noise level.
        let mut diff = vec![0i32; grey.len()];
        let mut histogram = [0u32; 256];
        for (i, (&p, &a)) in grey.iter().zip(&self.average).enumerate() {
            if self.unmasked[i] {
                let d = ((i32::from(p) << 4) - a - shift).abs();
                diff[i] = d;
                histogram[(d >> 4).min(255) as usize] += 1;
            }
        }
        let threshold = i32::from(self.threshold(&histogram)) << 4;
        for (a, &p) in self.average.iter_mut().zip(grey) {
            *a += ((i32::from(p) << 4) - *a) >> FOLLOW_SHIFT;
        }
        if self.seen <= WARM_UP {
            // The usual deviation: the mean of the differences so far.
            let n = (self.seen - 1) as i32;
            for (dev, &d) in self.deviation.iter_mut().zip(&diff) {
                *dev += (d - *dev) / n;
            }
            return none;
        }
        let changed: Vec<bool> = diff
            .iter()
            .zip(&self.deviation)
            .map(|(&d, &dev)| d > if dev > threshold { DEVIATION_K * dev } else { threshold })
            .collect();
        let largest = largest_blob(&changed, width, height);
        let score = largest as f32 / self.unmasked_count.max(1) as f32;
        let blob = score >= self.settings.min_area;
        if !blob {
            for (dev, &d) in self.deviation.iter_mut().zip(&diff) {
                *dev += (d - *dev) >> DEVIATION_FOLLOW_SHIFT;
            }
        }
        self.in_a_row = if blob { self.in_a_row.saturating_add(1) } else { 0 };
        Verdict { score, blob, motion: self.in_a_row >= CONFIRM }
    }

    /// The difference that counts as change: above the picture's noise (a multiple of the
    /// median difference: sensor and compression noise change most pixels a little), and
    /// above a floor that sensitivity lowers.
    fn threshold(&self, histogram: &[u32; 256]) -> u8 {
        let total: u32 = histogram.iter().sum();
        let mut seen = 0;
        let mut median = 0u32;
        for (level, &count) in histogram.iter().enumerate() {
            seen += count;
            if seen * 2 >= total {
                median = level as u32;
                break;
            }
        }
        // Sensitivity 100 → floor 6 grey levels, 50 → 28, 1 → 50.
        let s = u32::from(self.settings.sensitivity.clamp(1, 100));
        let floor = 50 - (s - 1) * 44 / 99;
        (floor.max(median * 4 + 4)).min(250) as u8
    }

    fn reset(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
        self.average = vec![0; width * height];
        self.deviation = vec![0; width * height];
        self.unmasked = vec![true; width * height];
        for mask in &self.settings.masks {
            for y in 0..height {
                for x in 0..width {
                    let p = ((x as f32 + 0.5) / width as f32, (y as f32 + 0.5) / height as f32);
                    if inside(p, mask) {
                        self.unmasked[y * width + x] = false;
                    }
                }
            }
        }
        self.unmasked_count = self.unmasked.iter().filter(|&&m| m).count();
        self.seen = 0;
        self.in_a_row = 0;
    }
}

/// Even-odd rule.
fn inside((x, y): (f32, f32), polygon: &[(f32, f32)]) -> bool {
    let mut inside = false;
    let mut j = polygon.len() - 1;
    for i in 0..polygon.len() {
        let (xi, yi) = polygon[i];
        let (xj, yj) = polygon[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Pixels in the largest 4-connected set of `changed` pixels.
fn largest_blob(changed: &[bool], width: usize, height: usize) -> usize {
    let mut label = vec![false; changed.len()];
    let mut stack = Vec::new();
    let mut largest = 0;
    for start in 0..changed.len() {
        if !changed[start] || label[start] {
            continue;
        }
        label[start] = true;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % width, i / width);
            let mut visit = |j: usize| {
                if changed[j] && !label[j] {
                    label[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < width {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - width);
            }
            if y + 1 < height {
                visit(i + width);
            }
        }
        largest = largest.max(size);
    }
    largest
}

#[cfg(test)]
mod tests;
