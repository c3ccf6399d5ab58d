use super::*;

const W: usize = 160;
const H: usize = 90;

/// A deterministic noise source (xorshift), so a failure replays.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in -amp..=amp.
    fn around(&mut self, amp: i32) -> i32 {
        (self.next() % (2 * amp as u64 + 1)) as i32 - amp
    }
}

/// A grey picture: `base` brightness, sensor noise of ±`amp`, and `boxes` (x, y, size, level).
fn picture(noise: &mut Noise, base: i32, amp: i32, boxes: &[(usize, usize, usize, i32)]) -> Vec<u8> {
    let mut p = vec![0u8; W * H];
    for y in 0..H {
        for x in 0..W {
            let mut v = base;
            for &(bx, by, size, level) in boxes {
                if (bx..bx + size).contains(&x) && (by..by + size).contains(&y) {
                    v = level;
                }
            }
            p[y * W + x] = (v + noise.around(amp)).clamp(0, 255) as u8;
        }
    }
    p
}

fn run(d: &mut PictureDetector, frames: impl IntoIterator<Item = Vec<u8>>) -> Vec<Verdict> {
    frames.into_iter().map(|f| d.observe(&f, W, H)).collect()
}

#[test]
fn sensor_noise_alone_is_not_motion() {
    let mut n = Noise(7);
    let mut d = PictureDetector::new(MotionSettings::default());
    let v = run(&mut d, (0..100).map(|_| picture(&mut n, 110, 12, &[])));
    assert!(v.iter().all(|v| !v.motion), "noise made motion: {:?}", v.iter().find(|v| v.motion));
    // Even at the highest sensitivity.
    let mut d = PictureDetector::new(MotionSettings { sensitivity: 100, ..Default::default() });
    let v = run(&mut d, (0..100).map(|_| picture(&mut n, 110, 12, &[])));
    assert!(v.iter().all(|v| !v.motion), "noise made motion at sensitivity 100");
}

#[test]
fn a_slow_change_of_light_is_not_motion_nor_a_sudden_one() {
    let mut n = Noise(11);
    let mut d = PictureDetector::new(MotionSettings::default());
    // Dawn: 40 → 190 over 150 pictures (30 s at 5/s), with noise.
    let v = run(&mut d, (0..150).map(|i| picture(&mut n, 40 + i, 6, &[])));
    assert!(v.iter().all(|v| !v.motion), "a ramp made motion");
    // A lamp switched on: the whole picture 60 grey levels brighter at once.
    let v = run(&mut d, (0..20).map(|i| picture(&mut n, if i < 10 { 120 } else { 180 }, 6, &[])));
    assert!(v.iter().all(|v| !v.motion), "a uniform jump of light made motion");
}

#[test]
fn a_moving_object_over_noise_is_motion_within_a_few_pictures() {
    let mut n = Noise(3);
    let mut d = PictureDetector::new(MotionSettings::default());
    let still = run(&mut d, (0..20).map(|_| picture(&mut n, 90, 10, &[])));
    assert!(still.iter().all(|v| !v.motion));
    // A 16 px object (2 % of the picture) crossing at 5 px a picture.
    let moving = run(&mut d, (0..20).map(|i| picture(&mut n, 90, 10, &[(10 + 5 * i, 30, 16, 200)])));
    let first = moving.iter().position(|v| v.motion).expect("motion found");
    assert!(first <= CONFIRM as usize + 1, "confirmed after {first} pictures");
    assert!(moving[first..].iter().all(|v| v.motion), "motion held while the object moves");
    let peak = moving.iter().map(|v| v.score).fold(0.0, f32::max);
    assert!(peak >= 0.01, "the blob is about the object's size: {peak}");
    // It stops: stillness again once the average has taken it in.
    let after = run(&mut d, (0..30).map(|_| picture(&mut n, 90, 10, &[(110, 30, 16, 200)])));
    assert!(!after.last().unwrap().motion, "a parked object is not motion forever");
}

/// `p` with snow in the rectangle `x0..x1` × `y0..y1`, every pixel random every picture:
/// full-range (0-255), or as the SMPTE test pattern's snowy corner looks scaled down to 160
/// px (about 125 ± 37); water and leaves are milder.
fn with_snow(mut p: Vec<u8>, noise: &mut Noise, (x0, x1, y0, y1): (usize, usize, usize, usize)) -> Vec<u8> {
    let full = noise.next().is_multiple_of(2);
    for y in y0..y1 {
        for x in x0..x1 {
            p[y * W + x] = if full {
                (noise.next() % 256) as u8
            } else {
                (125 + noise.around(64) + noise.around(64)).clamp(0, 255) as u8
            };
        }
    }
    p
}

#[test]
fn a_region_that_always_changes_is_not_motion_but_motion_beside_it_is() {
    let mut n = Noise(13);
    let corner = (120, 160, 67, 90); // 6.4 % of the picture
    let mut d = PictureDetector::new(MotionSettings::default());
    let v = run(&mut d, (0..150).map(|_| with_snow(picture(&mut n, 100, 6, &[]), &mut n, corner)));
    assert!(v.iter().all(|v| !v.motion), "snow made motion: {:?}", v.iter().position(|v| v.motion));
    let moving = (0..20).map(|i| with_snow(picture(&mut n, 100, 6, &[(5 + 4 * i, 20, 16, 220)]), &mut n, corner));
    assert!(run(&mut d, moving).iter().filter(|v| v.motion).count() >= 15, "motion beside the snow was missed");
}

#[test]
fn motion_that_stays_in_one_place_stays_motion() {
    // Someone working at one spot for 20 s: an object moving back and forth over 20 px.
    let mut n = Noise(17);
    let mut d = PictureDetector::new(MotionSettings::default());
    run(&mut d, (0..20).map(|_| picture(&mut n, 90, 8, &[])));
    let v = run(&mut d, (0..100).map(|i| picture(&mut n, 90, 8, &[(60 + [0, 10, 20, 10][i % 4], 30, 16, 210)])));
    let moving = v.iter().filter(|v| v.motion).count();
    assert!(moving >= 85, "only {moving} of 100 pictures were motion");
}

#[test]
fn small_objects_and_masked_areas_do_not_count() {
    let mut n = Noise(5);
    // A 3 px object (0.06 % of the picture) is below min_area.
    let mut d = PictureDetector::new(MotionSettings::default());
    let v = run(&mut d, (0..40).map(|i| picture(&mut n, 90, 8, &[(10 + 3 * i, 40, 3, 220)])));
    assert!(v.iter().all(|v| !v.motion), "a tiny object made motion");
    // The same 16 px object, in the masked left half: nothing; in the right half: motion.
    let left_half = vec![(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)];
    let mut d = PictureDetector::new(MotionSettings { masks: vec![left_half], ..Default::default() });
    let v = run(&mut d, (0..30).map(|i| picture(&mut n, 90, 8, &[(2 + 2 * (i % 25), 30, 16, 200)])));
    assert!(v.iter().all(|v| !v.motion), "motion inside the mask counted");
    let v = run(&mut d, (0..30).map(|i| picture(&mut n, 90, 8, &[(90 + 2 * (i % 25), 30, 16, 200)])));
    assert!(v.iter().any(|v| v.motion), "motion outside the mask was missed");
}

#[test]
fn settings_out_of_range_are_refused_naming_the_field() {
    let ok = MotionSettings::default();
    assert_eq!(ok.validate(), Ok(()));
    let e = |s: MotionSettings| s.validate().unwrap_err().to_string();
    assert!(e(MotionSettings { sensitivity: 0, ..ok.clone() }).starts_with("motion_sensitivity: 0"));
    assert!(e(MotionSettings { sensitivity: 101, ..ok.clone() }).starts_with("motion_sensitivity: 101"));
    assert!(e(MotionSettings { min_area: 0.0, ..ok.clone() }).starts_with("motion_min_area"));
    assert!(e(MotionSettings { min_area: f32::NAN, ..ok.clone() }).starts_with("motion_min_area"));
    assert!(
        e(MotionSettings { masks: vec![vec![(0.0, 0.0), (1.0, 1.0)]], ..ok.clone() })
            .starts_with("motion_masks: polygon 0")
    );
    let outside = vec![(0.0, 0.0), (1.2, 0.0), (0.5, 0.5)];
    assert!(e(MotionSettings { masks: vec![outside], ..ok.clone() }).contains("outside the picture"));
    assert_eq!(MotionSettings { sensitivity: 0, ..ok }.validate().unwrap_err().field, "motion_sensitivity");
}

#[test]
fn odd_input_gives_no_verdict_and_no_panic() {
    let mut d = PictureDetector::new(MotionSettings::default());
    assert!(!d.observe(&[], 0, 0).motion);
    assert!(!d.observe(&[1, 2, 3], 160, 90).motion, "short buffer");
    // A size change starts over instead of comparing different pictures.
    let mut n = Noise(9);
    for _ in 0..10 {
        d.observe(&picture(&mut n, 90, 5, &[]), W, H);
    }
    assert!(!d.observe(&vec![200u8; 80 * 45], 80, 45).motion);
}
