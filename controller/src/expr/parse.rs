//! Text → a type-checked syntax tree: a tokenizer, a precedence-climbing parser with a depth bound, and a type check
//! that runs as each node is built (so every error has the column of the node that caused it).

use super::{MAX_CHARS, MAX_DEPTH};

/// Why a condition does not parse. Not retryable: the record must change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct ParseError {
    /// The 1-based character column where the problem is.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

/// A function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Func {
    IsNaN,
    Len,
    Abs,
}

/// A variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Var {
    Result,
    Baseline,
}

/// A node of the syntax tree.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Node {
    Num(f64),
    Bool(bool),
    Var(Var),
    Neg(Box<Node>),
    Not(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    Call(Func, Box<Node>),
    Index(Box<Node>, Box<Node>),
}

/// A node's static type. `Sample` is `result` or `baseline`: a number or a vector, known only when measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Bool,
    Number,
    Vector,
    Sample,
}

impl Ty {
    fn numeric(self) -> bool {
        !matches!(self, Ty::Bool)
    }

    fn describe(self) -> &'static str {
        match self {
            Ty::Bool => "a boolean",
            Ty::Number => "a number",
            Ty::Vector => "a vector",
            Ty::Sample => "a measurement",
        }
    }

    /// The type of arithmetic on `self` and `other` (both numeric).
    fn combine(self, other: Ty) -> Ty {
        match (self, other) {
            (Ty::Number, Ty::Number) => Ty::Number,
            (Ty::Vector, _) | (_, Ty::Vector) => Ty::Vector,
            _ => Ty::Sample,
        }
    }
}

/// A typed node with its depth and column.
struct Typed {
    node: Node,
    ty: Ty,
    depth: usize,
    column: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("the number {n}"),
            Tok::Ident(name) => format!("`{name}`"),
            Tok::Op(op) => format!("`{op}`"),
            Tok::LParen => "`(`".to_owned(),
            Tok::RParen => "`)`".to_owned(),
            Tok::LBrack => "`[`".to_owned(),
            Tok::RBrack => "`]`".to_owned(),
            Tok::Comma => "`,`".to_owned(),
        }
    }
}

fn err(column: usize, message: impl Into<String>) -> ParseError {
    ParseError { column, message: message.into() }
}

/// Splits `text` into tokens, each with its 1-based column.
fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let literal: String = chars[start..i].iter().collect();
            match literal.parse::<f64>() {
                Ok(n) if n.is_finite() => out.push((Tok::Num(n), column)),
                Ok(_) => return Err(err(column, format!("the number `{literal}` is too large"))),
                Err(_) => return Err(err(column, format!("`{literal}` is not a number"))),
            }
            if chars.get(i).is_some_and(|c| c.is_alphanumeric() || *c == '_') {
                return Err(err(i + 1, format!("`{}` cannot follow a number", chars[i])));
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), column));
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, width) = match (c, next) {
            ('<', Some('=')) => (Tok::Op("<="), 2),
            ('>', Some('=')) => (Tok::Op(">="), 2),
            ('=', Some('=')) => (Tok::Op("=="), 2),
            ('!', Some('=')) => (Tok::Op("!="), 2),
            ('&', Some('&')) => (Tok::Op("&&"), 2),
            ('|', Some('|')) => (Tok::Op("||"), 2),
            ('<', _) => (Tok::Op("<"), 1),
            ('>', _) => (Tok::Op(">"), 1),
            ('!', _) => (Tok::Op("!"), 1),
            ('+', _) => (Tok::Op("+"), 1),
            ('-', _) => (Tok::Op("-"), 1),
            ('*', _) => (Tok::Op("*"), 1),
            ('/', _) => (Tok::Op("/"), 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBrack, 1),
            (']', _) => (Tok::RBrack, 1),
            (',', _) => (Tok::Comma, 1),
            ('=', _) => return Err(err(column, "`=` is not an operator: compare with `==`")),
            ('&', _) => return Err(err(column, "`&` is not an operator: use `&&`")),
            ('|', _) => return Err(err(column, "`|` is not an operator: use `||`")),
            (other, _) => return Err(err(column, format!("unexpected character `{}`", other.escape_debug()))),
        };
        out.push((tok, column));
        i += width;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// The column just past the end of the text, for "ends too early" errors.
    end_column: usize,
    uses_baseline: bool,
}

/// Parses and type-checks a condition; also says whether it uses `baseline`.
pub(super) fn parse_condition(text: &str) -> Result<(Node, bool), ParseError> {
    let chars = text.chars().count();
    if chars > MAX_CHARS {
        return Err(err(MAX_CHARS + 1, format!("a condition is at most {MAX_CHARS} characters, this one {chars}")));
    }
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Err(err(1, "the condition is empty: write e.g. `result < 0.05`"));
    }
    let mut p = Parser { toks, pos: 0, end_column: chars + 1, uses_baseline: false };
    let root = p.expr(0)?;
    if let Some((tok, column)) = p.peek() {
        return Err(err(*column, format!("unexpected {} after a complete expression", tok.describe())));
    }
    if root.ty != Ty::Bool {
        return Err(err(
            root.column,
            format!(
                "a condition must be true or false, and this is {}: compare it, e.g. `result < 0.05`",
                root.ty.describe()
            ),
        ));
    }
    Ok((root.node, p.uses_baseline))
}

/// Binding strength of a binary operator (higher binds tighter), and whether it is a comparison.
fn binary(tok: &Tok) -> Option<(BinOp, u8)> {
    let Tok::Op(op) = tok else { return None };
    Some(match *op {
        "||" => (BinOp::Or, 1),
        "&&" => (BinOp::And, 2),
        "<" => (BinOp::Lt, 3),
        "<=" => (BinOp::Le, 3),
        ">" => (BinOp::Gt, 3),
        ">=" => (BinOp::Ge, 3),
        "==" => (BinOp::Eq, 3),
        "!=" => (BinOp::Ne, 3),
        "+" => (BinOp::Add, 4),
        "-" => (BinOp::Sub, 4),
        "*" => (BinOp::Mul, 5),
        "/" => (BinOp::Div, 5),
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&(Tok, usize)> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), ParseError> {
        match self.next() {
            Some((tok, _)) if tok == *want => Ok(()),
            Some((tok, column)) => Err(err(column, format!("expected {what}, found {}", tok.describe()))),
            None => Err(err(self.end_column, format!("expected {what}, but the condition ends"))),
        }
    }

    /// A node, refused when the tree gets too deep.
    fn build(&self, node: Node, ty: Ty, depth: usize, column: usize) -> Result<Typed, ParseError> {
        if depth > MAX_DEPTH {
            return Err(err(column, format!("the condition nests deeper than {MAX_DEPTH} levels")));
        }
        Ok(Typed { node, ty, depth, column })
    }

    /// Precedence climbing: operands joined by operators binding at least as tightly as `min`.
    fn expr(&mut self, min: u8) -> Result<Typed, ParseError> {
        let mut left = self.unary(0)?;
        let mut last_comparison: Option<usize> = None;
        while let Some((tok, column)) = self.peek().cloned() {
            let Some((op, strength)) = binary(&tok) else { break };
            if strength < min {
                break;
            }
            self.pos += 1;
            if strength == 3
                && let Some(previous) = last_comparison
            {
                return Err(err(
                    column,
                    format!(
                        "comparisons do not chain (the one at column {previous} already compared): join them with `&&`"
                    ),
                ));
            }
            let right = self.expr(strength + 1)?;
            left = self.binary_node(op, left, right, column)?;
            // After a comparison only a weaker operator can follow at this level (a stronger one was taken into its
            // right side), so this remembers exactly "the left side is a comparison".
            last_comparison = (strength == 3).then_some(column);
        }
        Ok(left)
    }

    fn binary_node(&self, op: BinOp, left: Typed, right: Typed, column: usize) -> Result<Typed, ParseError> {
        let ty = match op {
            BinOp::And | BinOp::Or => {
                for side in [&left, &right] {
                    if side.ty != Ty::Bool {
                        return Err(err(
                            side.column,
                            format!("`{}` joins conditions, and this is {}", op.symbol(), side.ty.describe()),
                        ));
                    }
                }
                Ty::Bool
            }
            BinOp::Eq | BinOp::Ne if left.ty == Ty::Bool && right.ty == Ty::Bool => Ty::Bool,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne => {
                Self::numeric_operands(op, &left, &right)?;
                Ty::Bool
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                Self::numeric_operands(op, &left, &right)?;
                left.ty.combine(right.ty)
            }
        };
        let depth = 1 + left.depth.max(right.depth);
        self.build(Node::Bin(op, Box::new(left.node), Box::new(right.node)), ty, depth, left.column.min(column))
    }

    fn numeric_operands(op: BinOp, left: &Typed, right: &Typed) -> Result<(), ParseError> {
        for side in [left, right] {
            if !side.ty.numeric() {
                return Err(err(
                    side.column,
                    format!("`{}` takes numbers, and this is {}", op.symbol(), side.ty.describe()),
                ));
            }
        }
        Ok(())
    }

    /// `!x`, `-x`, or a postfix expression. `nesting` counts the unary operators above, for the depth bound.
    fn unary(&mut self, nesting: usize) -> Result<Typed, ParseError> {
        match self.peek().cloned() {
            Some((Tok::Op("!"), column)) => {
                self.pos += 1;
                if nesting >= MAX_DEPTH {
                    return Err(err(column, format!("the condition nests deeper than {MAX_DEPTH} levels")));
                }
                let inner = self.unary(nesting + 1)?;
                if inner.ty != Ty::Bool {
                    return Err(err(
                        inner.column,
                        format!(
                            "`!` negates a condition, and this is {} (write e.g. `!(result < 1)`)",
                            inner.ty.describe()
                        ),
                    ));
                }
                self.build(Node::Not(Box::new(inner.node)), Ty::Bool, inner.depth + 1, column)
            }
            Some((Tok::Op("-"), column)) => {
                self.pos += 1;
                if nesting >= MAX_DEPTH {
                    return Err(err(column, format!("the condition nests deeper than {MAX_DEPTH} levels")));
                }
                let inner = self.unary(nesting + 1)?;
                if !inner.ty.numeric() {
                    return Err(err(inner.column, format!("`-` takes a number, and this is {}", inner.ty.describe())));
                }
                self.build(Node::Neg(Box::new(inner.node)), inner.ty, inner.depth + 1, column)
            }
            _ => self.postfix(),
        }
    }

    /// A primary followed by any number of `[index]`.
    fn postfix(&mut self) -> Result<Typed, ParseError> {
        let mut base = self.primary()?;
        while let Some((Tok::LBrack, column)) = self.peek().cloned() {
            self.pos += 1;
            if !base.ty.numeric() {
                return Err(err(column, format!("only a measurement can be indexed, not {}", base.ty.describe())));
            }
            let index = self.expr(0)?;
            if index.ty != Ty::Number {
                return Err(err(index.column, format!("an index must be a number, not {}", index.ty.describe())));
            }
            self.expect(&Tok::RBrack, "`]`")?;
            let depth = 1 + base.depth.max(index.depth);
            base =
                self.build(Node::Index(Box::new(base.node), Box::new(index.node)), Ty::Number, depth, base.column)?;
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<Typed, ParseError> {
        let Some((tok, column)) = self.next() else {
            return Err(err(self.end_column, "the condition ends where a value was expected"));
        };
        match tok {
            Tok::Num(n) => self.build(Node::Num(n), Ty::Number, 1, column),
            Tok::LParen => {
                let inner = self.expr(0)?;
                self.expect(&Tok::RParen, "`)`")?;
                // Parentheses leave no node, but count toward the depth so `((((…))))` is bounded too.
                self.build(inner.node, inner.ty, inner.depth + 1, column)
            }
            Tok::Ident(name) => self.identifier(&name, column),
            other => Err(err(column, format!("expected a value, found {}", other.describe()))),
        }
    }

    fn identifier(&mut self, name: &str, column: usize) -> Result<Typed, ParseError> {
        let func = match name {
            "true" => return self.build(Node::Bool(true), Ty::Bool, 1, column),
            "false" => return self.build(Node::Bool(false), Ty::Bool, 1, column),
            "result" => return self.build(Node::Var(Var::Result), Ty::Sample, 1, column),
            "baseline" => {
                self.uses_baseline = true;
                return self.build(Node::Var(Var::Baseline), Ty::Sample, 1, column);
            }
            "isNaN" => Func::IsNaN,
            "len" => Func::Len,
            "abs" => Func::Abs,
            other => {
                return Err(err(
                    column,
                    format!(
                        "unknown name `{other}`: the values are `result` and `baseline`, the functions `isNaN`, \
                         `len` and `abs`"
                    ),
                ));
            }
        };
        if !matches!(self.peek(), Some((Tok::LParen, _))) {
            return Err(err(column, format!("`{name}` is a function: call it, e.g. `{name}(result)`")));
        }
        self.pos += 1;
        let arg = self.expr(0)?;
        if let Some((Tok::Comma, c)) = self.peek() {
            return Err(err(*c, format!("`{name}` takes one argument")));
        }
        self.expect(&Tok::RParen, "`)`")?;
        if !arg.ty.numeric() {
            return Err(err(arg.column, format!("`{name}` takes a number or a vector, not {}", arg.ty.describe())));
        }
        let ty = match func {
            Func::IsNaN => Ty::Bool,
            Func::Len => Ty::Number,
            Func::Abs => arg.ty,
        };
        self.build(Node::Call(func, Box::new(arg.node)), ty, arg.depth + 1, column)
    }
}
