//! Randomness: `random_int(min, max)` (both included), `random_float()` (in [0, 1)) and
//! `random_choice(array)` (`()` for an empty array).

use rand::RngExt;
use rhai::{Array, Dynamic, Engine, EvalAltResult, FLOAT, INT};

use super::ScriptModule;
use crate::rules::context::runtime_error;

/// The random functions.
pub struct Randomness;

impl ScriptModule for Randomness {
    fn name(&self) -> &'static str {
        "random"
    }

    fn register(&self, engine: &mut Engine) {
        engine
            .register_fn(
                "random_int",
                |min: INT, max: INT| -> Result<INT, Box<EvalAltResult>> {
                    if min > max {
                        return Err(runtime_error("random_int: min is greater than max"));
                    }
                    Ok(rand::rng().random_range(min..=max))
                },
            )
            .register_fn("random_float", || -> FLOAT {
                rand::rng().random::<FLOAT>()
            })
            .register_fn("random_choice", |items: Array| -> Dynamic {
                if items.is_empty() {
                    return Dynamic::UNIT;
                }
                let i = rand::rng().random_range(0..items.len());
                items[i].clone()
            });
    }
}
