//! Evaluation of a type-checked tree. Total: every input gives a value or an [`EvalError`], never a panic; its
//! recursion is bounded by the parser's depth limit.

use super::parse::{BinOp, Func, Node, Var};
use super::{Env, Sample};

/// Why a condition could not be evaluated on a measurement: the measurement counts as an error (retried), not as
/// a failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// What went wrong, naming the values.
    pub message: String,
}

fn fail<T>(message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError { message: message.into() })
}

/// A value during evaluation.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Bool(bool),
    Num(f64),
    Vec(Vec<f64>),
}

impl From<&Sample> for Value {
    fn from(s: &Sample) -> Value {
        match s {
            Sample::Scalar(x) => Value::Num(*x),
            Sample::Vector(v) => Value::Vec(v.clone()),
        }
    }
}

/// Evaluates a condition (the parser guarantees its root is boolean).
pub(super) fn eval_condition(root: &Node, env: &Env<'_>) -> Result<bool, EvalError> {
    match eval(root, env)? {
        Value::Bool(b) => Ok(b),
        other => fail(format!("the condition gave {other:?}, not true or false")),
    }
}

fn eval(node: &Node, env: &Env<'_>) -> Result<Value, EvalError> {
    Ok(match node {
        Node::Num(n) => Value::Num(*n),
        Node::Bool(b) => Value::Bool(*b),
        Node::Var(Var::Result) => Value::from(env.result),
        Node::Var(Var::Baseline) => match env.baseline {
            Some(b) => Value::from(b),
            None => return fail("`baseline` was not measured (no stable version to compare with)"),
        },
        Node::Neg(inner) => map(eval(inner, env)?, |x| -x)?,
        Node::Not(inner) => Value::Bool(!boolean(eval(inner, env)?)?),
        Node::Bin(BinOp::And, l, r) => Value::Bool(boolean(eval(l, env)?)? && boolean(eval(r, env)?)?),
        Node::Bin(BinOp::Or, l, r) => Value::Bool(boolean(eval(l, env)?)? || boolean(eval(r, env)?)?),
        Node::Bin(op, l, r) => binary(*op, eval(l, env)?, eval(r, env)?)?,
        Node::Call(Func::IsNaN, arg) => Value::Bool(match eval(arg, env)? {
            Value::Num(x) => x.is_nan(),
            Value::Vec(v) => v.iter().any(|x| x.is_nan()),
            Value::Bool(_) => return fail("isNaN takes a number"),
        }),
        Node::Call(Func::Len, arg) => match eval(arg, env)? {
            Value::Num(_) => Value::Num(1.0),
            // A vector holds at most what a query answered; its length is exact in an f64 far beyond that.
            Value::Vec(v) => Value::Num(v.len() as f64),
            Value::Bool(_) => return fail("len takes a number or a vector"),
        },
        Node::Call(Func::Abs, arg) => map(eval(arg, env)?, f64::abs)?,
        Node::Index(base, index) => {
            let i = match eval(index, env)? {
                Value::Num(i) => i,
                _ => return fail("an index must be a number"),
            };
            element(eval(base, env)?, i)?
        }
    })
}

fn boolean(v: Value) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(b),
        other => fail(format!("expected true or false, got {other:?}")),
    }
}

fn map(v: Value, f: impl Fn(f64) -> f64) -> Result<Value, EvalError> {
    match v {
        Value::Num(x) => Ok(Value::Num(f(x))),
        Value::Vec(v) => Ok(Value::Vec(v.into_iter().map(f).collect())),
        Value::Bool(_) => fail("expected a number"),
    }
}

fn element(base: Value, i: f64) -> Result<Value, EvalError> {
    let len = match &base {
        Value::Num(_) => 1,
        Value::Vec(v) => v.len(),
        Value::Bool(_) => return fail("only a measurement can be indexed"),
    };
    if !(i >= 0.0 && i.fract() == 0.0 && i < len as f64) {
        return fail(format!("index {i} is out of range: the value has {len} element(s)"));
    }
    // `i` is a whole number in 0..len, so the conversion is exact.
    let at = i as usize;
    Ok(match base {
        Value::Num(x) => Value::Num(x),
        Value::Vec(v) => Value::Num(v.get(at).copied().unwrap_or(f64::NAN)),
        Value::Bool(_) => return fail("only a measurement can be indexed"),
    })
}

/// Arithmetic and comparisons, element by element where vectors are involved.
fn binary(op: BinOp, l: Value, r: Value) -> Result<Value, EvalError> {
    if let (Value::Bool(a), Value::Bool(b)) = (&l, &r) {
        return match op {
            BinOp::Eq => Ok(Value::Bool(a == b)),
            BinOp::Ne => Ok(Value::Bool(a != b)),
            _ => fail(format!("`{op:?}` does not take booleans")),
        };
    }
    let pairs: Vec<(f64, f64)> = match (&l, &r) {
        (Value::Num(a), Value::Num(b)) => vec![(*a, *b)],
        (Value::Vec(v), Value::Num(b)) => v.iter().map(|a| (*a, *b)).collect(),
        (Value::Num(a), Value::Vec(v)) => v.iter().map(|b| (*a, *b)).collect(),
        (Value::Vec(a), Value::Vec(b)) if a.len() == b.len() => a.iter().copied().zip(b.iter().copied()).collect(),
        (Value::Vec(a), Value::Vec(b)) => {
            return fail(format!(
                "cannot combine vectors of different lengths ({} and {}): compare elements, e.g. `result[0]`",
                a.len(),
                b.len()
            ));
        }
        _ => return fail("cannot combine a boolean with a number"),
    };
    let scalar = matches!((&l, &r), (Value::Num(_), Value::Num(_)));
    let arith = |f: fn(f64, f64) -> f64| {
        let out: Vec<f64> = pairs.iter().map(|(a, b)| f(*a, *b)).collect();
        if scalar { Value::Num(out.first().copied().unwrap_or(f64::NAN)) } else { Value::Vec(out) }
    };
    let every = |f: fn(f64, f64) -> bool| Value::Bool(pairs.iter().all(|(a, b)| f(*a, *b)));
    Ok(match op {
        BinOp::Add => arith(|a, b| a + b),
        BinOp::Sub => arith(|a, b| a - b),
        BinOp::Mul => arith(|a, b| a * b),
        BinOp::Div => arith(|a, b| a / b),
        BinOp::Lt => every(|a, b| a < b),
        BinOp::Le => every(|a, b| a <= b),
        BinOp::Gt => every(|a, b| a > b),
        BinOp::Ge => every(|a, b| a >= b),
        #[allow(clippy::float_cmp)] // `==` in a condition means IEEE equality, as written.
        BinOp::Eq => every(|a, b| a == b),
        #[allow(clippy::float_cmp)]
        BinOp::Ne => every(|a, b| a != b),
        BinOp::And | BinOp::Or => return fail("`&&` and `||` take booleans"),
    })
}
