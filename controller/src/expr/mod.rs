//! Drover's condition language: the `successCondition` / `failureCondition` of an analysis template (issue #8).
//!
//! Small and safe on purpose: a condition is parsed once, when the record is validated (a condition that does not
//! parse makes the record `Invalid`, with the column), and evaluated on every measurement without panicking,
//! looping or allocating more than the size of its input. It is written by hand (no general-purpose expression
//! crate: the usual ones are AGPL or far larger than this needs).
//!
//! # The language
//! | form | meaning |
//! | --- | --- |
//! | `0.05`, `1e-3`, `100` | numbers (decimal, optional exponent) |
//! | `true`, `false` | booleans |
//! | `result` | the measurement: a number, or a vector (one number per series of a Prometheus vector) |
//! | `baseline` | the same query for the stable version (`{{ .Version }}` replaced by the stable version), for canary-versus-stable comparisons; using it makes the analysis run that second query |
//! | `result[0]` | a vector's element (0-based); on a number, `[0]` is the number itself; out of range is an evaluation error |
//! | `len(v)` | a vector's length (1 for a number) |
//! | `isNaN(x)` | true when `x` is NaN; on a vector, when **any** element is |
//! | `abs(x)` | the absolute value, element by element on a vector |
//! | `+ - * /` | arithmetic (IEEE: `x / 0` is infinite or NaN, never an error); a vector with a number works element by element, two vectors element by element when their lengths match |
//! | `< <= > >= == !=` | comparisons; a vector compared with a number (or two vectors) is true when **every** element satisfies it (an empty vector: true, but empty results never reach a condition: `onEmpty` judges them) |
//! | `&&`, `\|\|`, `!` | logic on booleans, short-circuiting |
//! | `( … )` | grouping |
//!
//! Precedence, lowest first: `||`, `&&`, comparisons (not chained: `a < b < c` is an error), `+ -`, `* /`, unary
//! `! -`, indexing. Types are checked when parsing: a condition must be true or false (`result + 1` alone is an
//! error), `&&` takes booleans, arithmetic takes numbers.
//!
//! NaN: comparisons follow IEEE (every comparison with NaN is false except `!=`), so a NaN never passes by accident;
//! the analysis applies `onNaN` to a NaN `result` before any condition runs.
//!
//! Bounds: at most [`MAX_CHARS`] characters and a syntax tree at most [`MAX_DEPTH`] deep, so evaluation's
//! recursion is bounded whatever a record holds.

mod eval;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

pub use eval::EvalError;
pub use parse::ParseError;

/// The longest condition accepted, in characters.
pub const MAX_CHARS: usize = 1024;
/// The deepest syntax tree accepted (nesting of parentheses, calls, operators).
pub const MAX_DEPTH: usize = 48;

/// A measured value: what a query answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    /// One number (a Prometheus scalar, a JSON number from a web metric).
    Scalar(f64),
    /// One number per series (a Prometheus instant vector); empty when the query matched no series.
    Vector(Vec<f64>),
}

impl Sample {
    /// Whether the query matched nothing (an empty vector).
    pub fn is_empty(&self) -> bool {
        matches!(self, Sample::Vector(v) if v.is_empty())
    }

    /// Whether any value is NaN.
    pub fn has_nan(&self) -> bool {
        match self {
            Sample::Scalar(x) => x.is_nan(),
            Sample::Vector(v) => v.iter().any(|x| x.is_nan()),
        }
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sample::Scalar(x) => write!(f, "{x}"),
            Sample::Vector(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// What a condition is evaluated against.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    /// The measurement.
    pub result: &'a Sample,
    /// The stable version's measurement, when it was taken.
    pub baseline: Option<&'a Sample>,
}

/// A parsed condition: a boolean expression over `result` and `baseline`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    source: String,
    root: parse::Node,
    uses_baseline: bool,
}

impl Condition {
    /// Parses and type-checks `text`.
    ///
    /// # Errors
    /// The first problem, with its column.
    pub fn parse(text: &str) -> Result<Condition, ParseError> {
        let (root, uses_baseline) = parse::parse_condition(text)?;
        Ok(Condition { source: text.to_owned(), root, uses_baseline })
    }

    /// Whether the condition holds for `env`.
    ///
    /// # Errors
    /// When it cannot be evaluated on these values (an index out of range, vectors of different lengths, `baseline`
    /// not measured): the measurement is then an error, not a failure.
    pub fn eval(&self, env: &Env<'_>) -> Result<bool, EvalError> {
        eval::eval_condition(&self.root, env)
    }

    /// Whether the condition mentions `baseline` (the analysis must then also measure the stable version).
    pub fn uses_baseline(&self) -> bool {
        self.uses_baseline
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}
