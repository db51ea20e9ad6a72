//! TEMPORARY (h8-analysis, until h8-spec's `crate::rollout::judge` and `crate::expr` are on main): a local copy of
//! the judge contract (issue #8 plan, contract 1) so the analysis stage compiles and is tested against the same
//! signatures. Its condition language is a subset (numbers, `result`, `baseline`, `isNaN`, `len`, arithmetic,
//! comparisons, `!`, `&&`, `||`); delete this file and point `super::judge` at `crate::rollout::judge` when merging.

use std::time::Duration;

use crate::app::FieldError;
use crate::app::analysis::{AnalysisTemplate, OnEmpty};
use crate::rollout::status::MAX_MEASUREMENTS;
use crate::rollout::{AnalysisPhase, AnalysisRunStatus, MeasurementPhase, MeasurementRecord};

/// What a query answered: one number, or a vector of them (an empty vector is an empty result).
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    /// A scalar, or the value of a one-series vector.
    Scalar(f64),
    /// The values of a vector's series.
    Vector(Vec<f64>),
}

/// One measurement as the provider left it: taken (with the stable version's value when the template compares), or
/// an error (not a failure).
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A value was read.
    Taken {
        /// The value for the version under test.
        result: Sample,
        /// The same query for the stable version, when the template needs it.
        baseline: Option<Sample>,
    },
    /// No value could be read; the text says why.
    Error(String),
}

/// An analysis template with its conditions parsed and defaults applied.
#[derive(Clone, Debug)]
pub struct CompiledTemplate {
    /// The template as written.
    pub template: AnalysisTemplate,
    /// Time between measurements.
    pub interval: Duration,
    /// Measurements to take.
    pub count: u32,
    /// Wait before the first.
    pub initial_delay: Duration,
    /// Failures tolerated.
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated.
    pub inconclusive_limit: u32,
    /// Errors in a row that fail the run.
    pub consecutive_error_limit: u32,
    /// The provider's timeout.
    pub timeout: Duration,
    success: Option<Expr>,
    failure: Option<Expr>,
}

impl CompiledTemplate {
    /// Parses the conditions and applies the defaults.
    pub fn new(t: &AnalysisTemplate) -> Result<CompiledTemplate, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut cond = |text: &Option<String>, path: &str| match text.as_deref().map(parse) {
            None => None,
            Some(Ok(e)) => Some(e),
            Some(Err(why)) => {
                errors.push(FieldError::new(path, why));
                None
            }
        };
        let success = cond(&t.success_condition, "successCondition");
        let failure = cond(&t.failure_condition, "failureCondition");
        if !errors.is_empty() {
            return Err(errors);
        }
        let count = |v: Option<i64>, d: u32| v.map_or(d, |v| u32::try_from(v.max(0)).unwrap_or(u32::MAX));
        let timeout = t.prometheus.as_ref().and_then(|p| p.timeout).or(t.web.as_ref().and_then(|w| w.timeout));
        Ok(CompiledTemplate {
            interval: t.interval.map_or(Duration::from_secs(30), |d| d.0),
            count: count(t.count, 1),
            initial_delay: t.initial_delay.map_or(Duration::ZERO, |d| d.0),
            failure_limit: count(t.failure_limit, 0),
            inconclusive_limit: count(t.inconclusive_limit, 0),
            consecutive_error_limit: count(t.consecutive_error_limit, 4).max(1),
            timeout: timeout.map_or(Duration::from_secs(10), |d| d.0),
            template: t.clone(),
            success,
            failure,
        })
    }

    /// True when a condition mentions `baseline`.
    pub fn needs_baseline(&self) -> bool {
        self.success.iter().chain(self.failure.iter()).any(Expr::mentions_baseline)
    }
}

fn show(s: &Sample) -> String {
    match s {
        Sample::Scalar(v) => v.to_string(),
        Sample::Vector(v) => format!("{v:?}"),
    }
}

fn policy(p: Option<OnEmpty>) -> MeasurementPhase {
    match p.unwrap_or_default() {
        OnEmpty::Inconclusive => MeasurementPhase::Inconclusive,
        OnEmpty::Fail => MeasurementPhase::Failed,
        OnEmpty::Pass => MeasurementPhase::Successful,
    }
}

/// Judges one measurement; the message says why.
pub fn classify(t: &CompiledTemplate, o: &Outcome) -> (MeasurementPhase, Option<String>) {
    let (result, baseline) = match o {
        Outcome::Error(e) => return (MeasurementPhase::Error, Some(e.clone())),
        Outcome::Taken { result, baseline } => (result, baseline.as_ref()),
    };
    match result {
        Sample::Vector(v) if v.is_empty() => {
            return (policy(t.template.on_empty), Some("the query returned no series".into()));
        }
        Sample::Scalar(v) if v.is_nan() => return (policy(t.template.on_nan), Some("the result is NaN".into())),
        Sample::Vector(v) if v.len() == 1 && v[0].is_nan() => {
            return (policy(t.template.on_nan), Some("the result is NaN".into()));
        }
        _ => {}
    }
    let env = Env { result: to_val(result), baseline: baseline.map(to_val) };
    let eval = |e: &Expr| e.eval(&env).and_then(Val::truth);
    let text = |c: &Option<String>| c.clone().unwrap_or_default();
    if let Some(f) = &t.failure {
        match eval(f) {
            Err(why) => return (MeasurementPhase::Error, Some(why)),
            Ok(true) => {
                let why = format!(
                    "failureCondition {:?} held: result = {}",
                    text(&t.template.failure_condition),
                    show(result)
                );
                return (MeasurementPhase::Failed, Some(why));
            }
            Ok(false) => {}
        }
    }
    match &t.success {
        None => (MeasurementPhase::Successful, None),
        Some(s) => match eval(s) {
            Err(why) => (MeasurementPhase::Error, Some(why)),
            Ok(true) => (MeasurementPhase::Successful, None),
            Ok(false) => {
                let why = format!(
                    "successCondition {:?} did not hold: result = {}",
                    text(&t.template.success_condition),
                    show(result)
                );
                let phase = if t.failure.is_some() { MeasurementPhase::Inconclusive } else { MeasurementPhase::Failed };
                (phase, Some(why))
            }
        },
    }
}

/// Counts `m` into `run`, keeps the newest measurements, and ends the run when a limit or `count` is reached.
pub fn record(run: &mut AnalysisRunStatus, t: &CompiledTemplate, m: MeasurementRecord) {
    run.dry_run = t.template.dry_run;
    match m.phase {
        MeasurementPhase::Successful => run.successful += 1,
        MeasurementPhase::Failed => run.failed += 1,
        MeasurementPhase::Inconclusive => run.inconclusive += 1,
        MeasurementPhase::Error => run.errors += 1,
    }
    if m.phase == MeasurementPhase::Error {
        run.consecutive_errors += 1;
    } else {
        run.consecutive_errors = 0;
    }
    let last = m.error.clone().unwrap_or_default();
    let query = m.query.clone();
    run.measurements.push(m);
    if run.measurements.len() > MAX_MEASUREMENTS {
        let extra = run.measurements.len() - MAX_MEASUREMENTS;
        run.measurements.drain(..extra);
    }
    if run.phase.is_terminal() {
        return;
    }
    let taken = run.successful + run.failed + run.inconclusive;
    if run.failed > t.failure_limit {
        run.phase = AnalysisPhase::Failed;
        run.message = format!(
            "{} of {taken} measurements failed (failureLimit {}): {last}; query {query}",
            run.failed, t.failure_limit
        );
    } else if run.consecutive_errors >= t.consecutive_error_limit {
        run.phase = AnalysisPhase::Failed;
        run.message = format!(
            "{} measurements in a row could not be taken (consecutiveErrorLimit {}): {last}",
            run.consecutive_errors, t.consecutive_error_limit
        );
    } else if run.inconclusive > t.inconclusive_limit {
        run.phase = AnalysisPhase::Inconclusive;
        run.message = format!("{} inconclusive (inconclusiveLimit {}): {last}", run.inconclusive, t.inconclusive_limit);
    } else if taken >= t.count {
        run.phase = AnalysisPhase::Successful;
        run.message = format!("{taken} of {} measurements taken, {} passed", t.count, run.successful);
    }
}

// --- the condition subset ---

#[derive(Clone, Debug)]
enum Expr {
    Num(f64),
    Result,
    Baseline,
    Call(&'static str, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Debug)]
enum Val {
    Num(f64),
    Bool(bool),
    List(Vec<f64>),
}

struct Env {
    result: Val,
    baseline: Option<Val>,
}

fn to_val(s: &Sample) -> Val {
    match s {
        Sample::Scalar(v) => Val::Num(*v),
        Sample::Vector(v) if v.len() == 1 => Val::Num(v[0]),
        Sample::Vector(v) => Val::List(v.clone()),
    }
}

impl Val {
    fn truth(self) -> Result<bool, String> {
        match self {
            Val::Bool(b) => Ok(b),
            other => Err(format!("the condition is not true or false but {other:?}")),
        }
    }
    fn num(self) -> Result<f64, String> {
        match self {
            Val::Num(n) => Ok(n),
            other => Err(format!("{other:?} is not a number")),
        }
    }
}

impl Expr {
    fn mentions_baseline(&self) -> bool {
        match self {
            Expr::Baseline => true,
            Expr::Num(_) | Expr::Result => false,
            Expr::Call(_, e) | Expr::Not(e) | Expr::Neg(e) => e.mentions_baseline(),
            Expr::Bin(_, a, b) => a.mentions_baseline() || b.mentions_baseline(),
        }
    }

    fn eval(&self, env: &Env) -> Result<Val, String> {
        Ok(match self {
            Expr::Num(n) => Val::Num(*n),
            Expr::Result => env.result.clone(),
            Expr::Baseline => env.baseline.clone().ok_or("no baseline was measured")?,
            Expr::Call("len", e) => match e.eval(env)? {
                Val::List(l) => Val::Num(l.len() as f64),
                _ => Val::Num(1.0),
            },
            Expr::Call(_, e) => Val::Bool(e.eval(env)?.num()?.is_nan()),
            Expr::Not(e) => Val::Bool(!e.eval(env)?.truth()?),
            Expr::Neg(e) => Val::Num(-e.eval(env)?.num()?),
            Expr::Bin("&&", a, b) => Val::Bool(a.eval(env)?.truth()? && b.eval(env)?.truth()?),
            Expr::Bin("||", a, b) => Val::Bool(a.eval(env)?.truth()? || b.eval(env)?.truth()?),
            Expr::Bin(op, a, b) => {
                let (x, y) = (a.eval(env)?.num()?, b.eval(env)?.num()?);
                match *op {
                    "+" => Val::Num(x + y),
                    "-" => Val::Num(x - y),
                    "*" => Val::Num(x * y),
                    "/" => Val::Num(x / y),
                    "<" => Val::Bool(x < y),
                    "<=" => Val::Bool(x <= y),
                    ">" => Val::Bool(x > y),
                    ">=" => Val::Bool(x >= y),
                    "==" => Val::Bool(x == y),
                    _ => Val::Bool(x != y),
                }
            }
        })
    }
}

const OPS: [(&str, u8); 12] = [
    ("||", 1),
    ("&&", 2),
    ("==", 3),
    ("!=", 3),
    ("<=", 4),
    (">=", 4),
    ("<", 4),
    (">", 4),
    ("+", 5),
    ("-", 5),
    ("*", 6),
    ("/", 6),
];

fn parse(text: &str) -> Result<Expr, String> {
    let mut p = Parser { s: text, at: 0 };
    let e = p.expr(1)?;
    p.ws();
    if p.at < p.s.len() { Err(format!("unexpected {:?} at byte {}", &p.s[p.at..], p.at)) } else { Ok(e) }
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s[self.at..].starts_with(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        let hit = self.s[self.at..].starts_with(tok);
        if hit {
            self.at += tok.len();
        }
        hit
    }

    fn expr(&mut self, min: u8) -> Result<Expr, String> {
        let mut lhs = self.atom()?;
        loop {
            self.ws();
            let rest = &self.s[self.at..];
            let Some(&(op, prec)) = OPS.iter().find(|(op, _)| rest.starts_with(op)) else { break };
            if prec < min {
                break;
            }
            self.at += op.len();
            let rhs = self.expr(prec + 1)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        if self.eat("(") {
            let e = self.expr(1)?;
            return if self.eat(")") { Ok(e) } else { Err("`(` is not closed".into()) };
        }
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.atom()?)));
        }
        if self.eat("-") {
            return Ok(Expr::Neg(Box::new(self.atom()?)));
        }
        for (name, f) in [("isNaN(", "isNaN"), ("len(", "len")] {
            if self.eat(name) {
                let e = self.expr(1)?;
                return if self.eat(")") { Ok(Expr::Call(f, Box::new(e))) } else { Err(format!("{f}( is not closed")) };
            }
        }
        if self.eat("result") {
            return Ok(Expr::Result);
        }
        if self.eat("baseline") {
            return Ok(Expr::Baseline);
        }
        self.ws();
        let len = self.s[self.at..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e'))
            .unwrap_or(self.s.len() - self.at);
        let text = &self.s[self.at..self.at + len];
        let n: f64 = text.parse().map_err(|_| format!("expected a value at byte {}", self.at))?;
        self.at += len;
        Ok(Expr::Num(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(success: Option<&str>, failure: Option<&str>) -> CompiledTemplate {
        let t = AnalysisTemplate {
            success_condition: success.map(str::to_string),
            failure_condition: failure.map(str::to_string),
            ..AnalysisTemplate::default()
        };
        CompiledTemplate::new(&t).expect("compiles")
    }

    fn taken(v: f64) -> Outcome {
        Outcome::Taken { result: Sample::Scalar(v), baseline: Some(Sample::Scalar(0.01)) }
    }

    #[test]
    fn classify_should_apply_conditions_with_precedence() {
        let t = template(Some("result < 0.05 && result >= 0"), Some("result > 2 * baseline + 0.1"));
        assert!(t.needs_baseline());
        assert_eq!(classify(&t, &taken(0.01)).0, MeasurementPhase::Successful);
        assert_eq!(classify(&t, &taken(0.5)).0, MeasurementPhase::Failed);
        assert_eq!(classify(&t, &taken(0.07)).0, MeasurementPhase::Inconclusive);
        assert_eq!(
            classify(&t, &Outcome::Taken { result: Sample::Vector(vec![]), baseline: None }).0,
            MeasurementPhase::Inconclusive
        );
        assert!(
            CompiledTemplate::new(&AnalysisTemplate {
                success_condition: Some("result <".into()),
                ..Default::default()
            })
            .is_err()
        );
    }
}
