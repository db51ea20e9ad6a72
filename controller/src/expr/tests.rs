use proptest::prelude::*;

use super::*;

fn scalar(x: f64) -> Sample {
    Sample::Scalar(x)
}

fn vector(v: &[f64]) -> Sample {
    Sample::Vector(v.to_vec())
}

/// Evaluates `text` on `result` (and `baseline`), panicking with the error when it does not parse.
fn holds(text: &str, result: &Sample, baseline: Option<&Sample>) -> Result<bool, EvalError> {
    let c = Condition::parse(text).unwrap_or_else(|e| panic!("{text:?} must parse: {e}"));
    c.eval(&Env { result, baseline })
}

fn on(text: &str, x: f64) -> bool {
    holds(text, &scalar(x), None).unwrap_or_else(|e| panic!("{text:?} on {x}: {e}"))
}

fn parse_error(text: &str) -> ParseError {
    Condition::parse(text).expect_err(&format!("{text:?} must not parse"))
}

#[test]
fn condition_should_compare_numbers_with_every_operator() {
    for (text, x, want) in [
        ("result < 0.05", 0.01, true),
        ("result < 0.05", 0.05, false),
        ("result <= 0.05", 0.05, true),
        ("result > 10", 11.0, true),
        ("result >= 10", 9.5, false),
        ("result == 3", 3.0, true),
        ("result != 3", 3.0, false),
        ("0.05 > result", 0.01, true),
        ("result < 1e-3", 1e-4, true),
        ("result < .5", 0.25, true),
        ("result > 1.5E2", 151.0, true),
    ] {
        assert_eq!(on(text, x), want, "{text} on {x}");
    }
}

#[test]
fn condition_should_follow_precedence_and_associativity() {
    // * before +, left to right: 10 - 2 - 3 = 5, not 11.
    assert!(on("10 - 2 - 3 == result", 5.0));
    assert!(on("1 + 2 * 3 == result", 7.0));
    assert!(on("(1 + 2) * 3 == result", 9.0));
    assert!(on("result / 2 / 2 == 1", 4.0));
    assert!(on("-result == -4", 4.0));
    assert!(on("- -result == 4", 4.0));
    // && binds tighter than ||: true || (false && false).
    assert!(on("result > 0 || result < 0 && result > 100", 1.0));
    assert!(!on("(result > 0 || result < 0) && result > 100", 1.0));
    assert!(on("!(result > 5) && true", 1.0));
    assert!(on("!false", 0.0));
    assert!(on("true == (result > 0)", 1.0));
    assert!(on("true != false", 0.0));
}

#[test]
fn condition_should_short_circuit_logic() {
    // The right side would fail (index out of range) if it were evaluated.
    assert_eq!(holds("len(result) == 0 || result[0] < 1", &vector(&[]), None), Ok(true));
    assert_eq!(holds("len(result) > 0 && result[0] < 1", &vector(&[]), None), Ok(false));
}

#[test]
fn condition_should_treat_a_vector_compared_with_a_number_as_every_element() {
    let v = vector(&[0.01, 0.02, 0.03]);
    assert_eq!(holds("result < 0.05", &v, None), Ok(true));
    assert_eq!(holds("result < 0.025", &v, None), Ok(false));
    assert_eq!(holds("0 < result", &v, None), Ok(true));
    assert_eq!(holds("result * 100 < 4", &v, None), Ok(true));
    assert_eq!(holds("result[1] == 0.02", &v, None), Ok(true));
    assert_eq!(holds("result[len(result) - 1] == 0.03", &v, None), Ok(true));
    assert_eq!(holds("len(result) == 3", &v, None), Ok(true));
    // Vacuous truth for an empty vector (the analysis judges empty results with onEmpty before any condition).
    assert_eq!(holds("result > 100", &vector(&[]), None), Ok(true));
    // A scalar is a one-element value.
    assert!(on("len(result) == 1 && result[0] == result", 7.0));
}

#[test]
fn condition_should_compare_with_a_baseline() {
    let canary = scalar(0.03);
    let stable = scalar(0.02);
    assert_eq!(holds("result <= baseline * 1.2", &canary, Some(&stable)), Ok(false));
    assert_eq!(holds("result - baseline < 0.02", &canary, Some(&stable)), Ok(true));
    assert_eq!(holds("abs(result - baseline) < 0.02", &stable, Some(&canary)), Ok(true));
    // Two vectors: element by element when their lengths match, an error otherwise.
    assert_eq!(holds("result <= baseline", &vector(&[1.0, 2.0]), Some(&vector(&[1.0, 3.0]))), Ok(true));
    let mismatch = holds("result <= baseline", &vector(&[1.0, 2.0]), Some(&vector(&[1.0]))).expect_err("lengths");
    assert!(mismatch.message.contains("different lengths (2 and 1)"), "{mismatch}");
    // No baseline measured: an error, never a pass.
    let missing = holds("result < baseline", &canary, None).expect_err("no baseline");
    assert!(missing.message.contains("baseline"), "{missing}");
    assert!(Condition::parse("result < baseline").expect("parses").uses_baseline());
    assert!(!Condition::parse("result < 1").expect("parses").uses_baseline());
}

#[test]
fn condition_should_be_nan_safe() {
    // IEEE: every comparison with NaN is false except `!=`, so NaN never passes `result < x` by accident.
    for text in ["result < 1", "result > 1", "result == result", "result <= 1e300", "result >= -1e300"] {
        assert!(!on(text, f64::NAN), "{text}");
    }
    assert!(on("result != 1", f64::NAN));
    assert!(on("isNaN(result)", f64::NAN));
    assert!(!on("isNaN(result)", 0.0));
    assert_eq!(holds("isNaN(result)", &vector(&[1.0, f64::NAN]), None), Ok(true));
    assert_eq!(holds("isNaN(result)", &vector(&[1.0, 2.0]), None), Ok(false));
    // Division by zero is IEEE, not an error.
    assert!(on("result / 0 > 1e308", 1.0));
    assert!(on("isNaN(result / 0)", 0.0));
    assert!(on("abs(result) == 2", -2.0));
}

#[test]
fn condition_should_report_evaluation_errors_not_panic() {
    for (text, x) in [("result[3] < 1", 1.0), ("result[-1] < 1", 1.0), ("result[0.5] < 1", 1.0)] {
        let e = holds(text, &scalar(x), None).expect_err(text);
        assert!(e.message.contains("out of range"), "{text}: {e}");
    }
    let e = holds("result[2] < 1", &vector(&[1.0, 2.0]), None).expect_err("out of range");
    assert_eq!(e.message, "index 2 is out of range: the value has 2 element(s)");
}

#[test]
fn parse_should_say_where_and_why() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "empty"),
        ("   ", 1, "empty"),
        ("result <", 9, "ends where a value was expected"),
        ("result < 0.05 )", 15, "unexpected `)`"),
        ("(result < 1", 12, "expected `)`"),
        ("result = 1", 8, "compare with `==`"),
        ("result < 1 & true", 12, "use `&&`"),
        ("result < 1 | true", 12, "use `||`"),
        ("result < 1 $", 12, "unexpected character `$`"),
        ("reslt < 1", 1, "unknown name `reslt`"),
        ("result + 1", 1, "must be true or false"),
        ("result", 1, "must be true or false"),
        ("1 < result < 2", 12, "do not chain"),
        ("result && true", 1, "joins conditions"),
        ("true && 1", 9, "joins conditions"),
        ("!result", 2, "`!` negates a condition"),
        ("-(result < 1)", 2, "`-` takes a number"),
        ("true < 1", 1, "takes numbers"),
        ("(result < 1) + 1 > 0", 1, "takes numbers"),
        ("isNaN < 1", 1, "is a function"),
        ("len(result, 1) > 0", 11, "takes one argument"),
        ("isNaN(true)", 7, "takes a number or a vector"),
        ("result[true] < 1", 8, "index must be a number"),
        ("(result < 1)[0]", 13, "only a measurement can be indexed"),
        ("result < 1e999", 10, "too large"),
        ("result < 1.2.3", 10, "not a number"),
        ("result < 12abc", 12, "cannot follow a number"),
        ("result < 1 result", 12, "unexpected `result` after a complete expression"),
        ("résult < 1", 2, "unexpected character `é`"),
    ];
    for (text, column, part) in cases {
        let e = parse_error(text);
        assert_eq!(e.column, *column, "{text:?}: {e}");
        assert!(e.message.contains(part), "{text:?}: {e} should say {part:?}");
        assert!(e.to_string().starts_with(&format!("at column {column}: ")), "{e}");
    }
}

#[test]
fn parse_should_bound_length_and_depth() {
    let long = format!("result < {}", "1".repeat(MAX_CHARS));
    assert!(parse_error(&long).message.contains("at most 1024 characters"));
    let deep = format!("{}result < 1{}", "(".repeat(MAX_DEPTH + 2), ")".repeat(MAX_DEPTH + 2));
    assert!(parse_error(&deep).message.contains("nests deeper"), "{}", parse_error(&deep));
    let nots = format!("{}true", "!".repeat(MAX_DEPTH + 2));
    assert!(parse_error(&nots).message.contains("nests deeper"));
    let chain = format!("result{} < 1", " + 1".repeat(MAX_DEPTH + 2));
    assert!(parse_error(&chain).message.contains("nests deeper"));
    // Within the bounds, deep but legal conditions parse and evaluate.
    let ok = format!("{}result < 1{}", "(".repeat(MAX_DEPTH - 3), ")".repeat(MAX_DEPTH - 3));
    assert!(on(&ok, 0.0));
}

#[test]
fn sample_should_display_and_describe_itself() {
    assert_eq!(scalar(0.31).to_string(), "0.31");
    assert_eq!(vector(&[1.0, 2.5]).to_string(), "[1, 2.5]");
    assert_eq!(scalar(f64::NAN).to_string(), "NaN");
    assert!(vector(&[]).is_empty());
    assert!(!scalar(0.0).is_empty());
    assert!(vector(&[0.0, f64::NAN]).has_nan());
    assert_eq!(Condition::parse("result  <  1").expect("parses").to_string(), "result  <  1");
}

/// Text from the language's own alphabet, so the fuzzing reaches the parser's deep paths, not only the tokenizer.
fn condition_text() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "result", "baseline", "isNaN(", "len(", "abs(", "(", ")", "[", "]", "0", "1", "2.5", "1e-3", "<", "<=", ">",
        ">=", "==", "!=", "&&", "||", "!", "+", "-", "*", "/", ",", "true", "false", " ",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|parts| parts.concat())
}

fn sample() -> impl Strategy<Value = Sample> {
    let value = prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(0.0), Just(1.0),];
    prop_oneof![value.clone().prop_map(Sample::Scalar), prop::collection::vec(value, 0..4).prop_map(Sample::Vector),]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn evaluation_should_never_panic_on_grammar_shaped_input(
        text in condition_text(),
        result in sample(),
        baseline in prop::option::of(sample()),
    ) {
        if let Ok(c) = Condition::parse(&text) {
            let _ = c.eval(&Env { result: &result, baseline: baseline.as_ref() });
        }
    }

    #[test]
    fn parsing_should_never_panic_on_arbitrary_text(text in "\\PC{0,200}") {
        if let Err(e) = Condition::parse(&text) {
            prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 2, "{e} for {text:?}");
        }
    }

    #[test]
    fn a_comparison_should_agree_with_rust_on_every_number(x in any::<f64>(), y in -1e6f64..1e6) {
        let text = format!("result < {y}");
        prop_assert_eq!(holds(&text, &Sample::Scalar(x), None), Ok(x < y));
    }
}
