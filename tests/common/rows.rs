//! Feature rows built to catch a walk taking the wrong branch: missing values, zeros, values exactly
//! on the model's split thresholds and their float neighbours, and plain random values.

use ndarray::Array2;
use xgserve::engine::Forest;

/// A small deterministic generator (xorshift64*), so failures replay.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `rows` rows for `forest`, the same for the same `seed`. With `extremes`, a zero may also be
/// -0.0 or an infinity (libxgboost's DMatrix refuses infinities, so its differential test asks for
/// none; without `extremes` the rows are what they always were).
pub fn random_rows(forest: &Forest, rows: usize, seed: u64, extremes: bool) -> Array2<f32> {
    let width = forest.num_features();
    let mut thresholds = vec![Vec::new(); width];
    for (feature, value) in forest.splits() {
        thresholds[feature].push(value);
    }
    let mut rng = Rng(seed);
    Array2::from_shape_fn((rows, width), |(_, feature)| {
        let on_split = |rng: &mut Rng| {
            let list = &thresholds[feature];
            if list.is_empty() {
                0.0
            } else {
                list[rng.below(list.len())]
            }
        };
        match rng.below(10) {
            0 => f32::NAN,
            1 if extremes => [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY][rng.below(4)],
            1 => 0.0,
            2 | 3 => on_split(&mut rng),
            4 => {
                let t = on_split(&mut rng);
                if rng.below(2) == 0 {
                    t.next_down()
                } else {
                    t.next_up()
                }
            }
            5 => (rng.unit() - 0.5) * 1e6,
            _ => (rng.unit() - 0.5) * 6.0,
        }
    })
}
