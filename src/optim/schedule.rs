/// Learning-rate factor as a function of the step (iteration or epoch, the caller's unit).
#[derive(Clone, Debug, PartialEq)]
pub enum LrSchedule {
    Constant,
    /// ×gamma at each milestone reached (factor = gamma^#{m ≤ t}).
    Step {
        milestones: Vec<usize>,
        gamma: f64,
    },
    /// (1 − t/max)^power, 0 from `max` on.
    Poly {
        max: usize,
        power: f64,
    },
}

impl LrSchedule {
    pub fn factor(&self, t: usize) -> f64 {
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Step { milestones, gamma } => {
                gamma.powi(milestones.iter().filter(|&&m| m <= t).count() as i32)
            }
            LrSchedule::Poly { max, power } => {
                if t >= *max {
                    0.0
                } else {
                    (1.0 - t as f64 / *max as f64).powf(*power)
                }
            }
        }
    }
}
