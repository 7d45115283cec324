//! Placement constraints: boolean expressions over a node's tags.
//!
//! ```text
//! expr   := or
//! or     := and ( "||" and )*
//! and    := unary ( "&&" unary )*
//! unary  := "!" unary | "(" expr ")" | atom
//! atom   := NAME "in" "[" NAME ( "," NAME )* "]"     region in [eu, us]
//!         | NAME ( "==" | "!=" ) NAME                 tier == gold
//!         | NAME                                      kyc, country:fr
//! NAME   := one or more of  A-Z a-z 0-9 - _ . :
//! ```
//!
//! Tags are `key=value` pairs; a flag such as `kyc` is a key with an empty value.
//! A bare `NAME` holds if the node has a tag with that key (any value), or, when
//! the name reads `key:value`, if tag `key` has that value: `country:fr` matches a
//! node tagged `country:fr` and one tagged `country=fr`. `k in [...]` and `k == v`
//! compare tag `k`'s value (a node without tag `k` fails them; it passes `k != v`).
//!
//! Parsing is total: any input yields an expression or a [`ParseError`] naming the
//! byte offset, never a panic (`tests::arbitrary_text_never_panics`).

use std::fmt;

use plexus_vocab::resources::Tags;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest expression accepted, in bytes.
pub const EXPR_BYTES_MAX: usize = 4096;
/// Deepest nesting accepted.
const DEPTH_MAX: usize = 64;

/// A constraint over tags.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// Always true (the empty constraint).
    True,
    /// A tag key is present (or `key:value` matches).
    Has(String),
    /// Tag `key`'s value is one of these.
    In(String, Vec<String>),
    /// Tag `key`'s value equals this.
    Eq(String, String),
    /// Not.
    Not(Box<Expr>),
    /// All of these.
    And(Vec<Expr>),
    /// Any of these.
    Or(Vec<Expr>),
}

/// Why a constraint did not parse. The job's author is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Longer than [`EXPR_BYTES_MAX`].
    #[error("constraint is {0} bytes; the limit is {EXPR_BYTES_MAX}")]
    TooLong(usize),
    /// Nested deeper than the parser allows.
    #[error("constraint nests deeper than {DEPTH_MAX} levels")]
    TooDeep,
    /// Something else was expected at `at`.
    #[error("at byte {at}: expected {expected}, found {found}")]
    Unexpected {
        /// Byte offset.
        at: usize,
        /// What would have been valid.
        expected: &'static str,
        /// What was there.
        found: String,
    },
}

impl Expr {
    /// Parses a constraint. Empty (or all-space) text is [`Expr::True`].
    pub fn parse(text: &str) -> Result<Expr, ParseError> {
        if text.len() > EXPR_BYTES_MAX {
            return Err(ParseError::TooLong(text.len()));
        }
        let tokens = lex(text)?;
        if tokens.is_empty() {
            return Ok(Expr::True);
        }
        let mut p = Parser {
            tokens,
            pos: 0,
            depth: 0,
            end: text.len(),
        };
        let e = p.or()?;
        if let Some((at, t)) = p.tokens.get(p.pos) {
            return Err(ParseError::Unexpected {
                at: *at,
                expected: "`&&`, `||` or the end",
                found: t.describe(),
            });
        }
        Ok(e)
    }

    /// Whether a node with `tags` satisfies it.
    pub fn eval(&self, tags: &Tags) -> bool {
        match self {
            Expr::True => true,
            Expr::Has(name) => {
                tags.contains_key(name)
                    || name
                        .split_once(':')
                        .is_some_and(|(k, v)| tags.get(k).is_some_and(|x| x == v))
            }
            Expr::In(key, values) => tags.get(key).is_some_and(|v| values.contains(v)),
            Expr::Eq(key, value) => tags.get(key).is_some_and(|v| v == value),
            Expr::Not(e) => !e.eval(tags),
            Expr::And(es) => es.iter().all(|e| e.eval(tags)),
            Expr::Or(es) => es.iter().any(|e| e.eval(tags)),
        }
    }

    /// `self && other`.
    pub fn and(self, other: Expr) -> Expr {
        match (self, other) {
            (Expr::True, e) | (e, Expr::True) => e,
            (Expr::And(mut a), Expr::And(b)) => {
                a.extend(b);
                Expr::And(a)
            }
            (Expr::And(mut a), b) => {
                a.push(b);
                Expr::And(a)
            }
            (a, b) => Expr::And(vec![a, b]),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::True => Ok(()),
            Expr::Has(n) => f.write_str(n),
            Expr::In(k, vs) => write!(f, "{k} in [{}]", vs.join(", ")),
            Expr::Eq(k, v) => write!(f, "{k} == {v}"),
            Expr::Not(e) => match **e {
                Expr::And(_) | Expr::Or(_) | Expr::In(..) | Expr::Eq(..) => write!(f, "!({e})"),
                _ => write!(f, "!{e}"),
            },
            Expr::And(es) => join(f, es, " && "),
            Expr::Or(es) => join(f, es, " || "),
        }
    }
}

fn join(f: &mut fmt::Formatter<'_>, es: &[Expr], sep: &str) -> fmt::Result {
    for (i, e) in es.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        match e {
            Expr::And(_) | Expr::Or(_) => write!(f, "({e})")?,
            _ => write!(f, "{e}")?,
        }
    }
    Ok(())
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Expr::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Name(String),
    And,
    Or,
    Not,
    Open,
    Close,
    LBracket,
    RBracket,
    Comma,
    EqEq,
    NotEq,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Name(n) => format!("`{n}`"),
            Tok::And => "`&&`".into(),
            Tok::Or => "`||`".into(),
            Tok::Not => "`!`".into(),
            Tok::Open => "`(`".into(),
            Tok::Close => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::EqEq => "`==`".into(),
            Tok::NotEq => "`!=`".into(),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.:".contains(c)
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let two = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, want: char| {
            if chars.peek().is_some_and(|(_, n)| *n == want) {
                chars.next();
                true
            } else {
                false
            }
        };
        let tok = match c {
            c if c.is_whitespace() => continue,
            '&' if two(&mut chars, '&') => Tok::And,
            '|' if two(&mut chars, '|') => Tok::Or,
            '!' if two(&mut chars, '=') => Tok::NotEq,
            '!' => Tok::Not,
            '=' if two(&mut chars, '=') => Tok::EqEq,
            '(' => Tok::Open,
            ')' => Tok::Close,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            c if is_name_char(c) => {
                let mut name = String::from(c);
                while let Some((_, n)) = chars.peek() {
                    if is_name_char(*n) {
                        name.push(*n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                Tok::Name(name)
            }
            other => {
                return Err(ParseError::Unexpected {
                    at,
                    expected: "a tag name, `!`, `(`, `&&`, `||`, `in`, `==` or `!=`",
                    found: format!("`{}`", other.escape_debug()),
                });
            }
        };
        out.push((at, tok));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    depth: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn unexpected(&self, expected: &'static str) -> ParseError {
        match self.tokens.get(self.pos) {
            Some((at, t)) => ParseError::Unexpected {
                at: *at,
                expected,
                found: t.describe(),
            },
            None => ParseError::Unexpected {
                at: self.end,
                expected,
                found: "the end".into(),
            },
        }
    }

    fn name(&mut self, expected: &'static str) -> Result<String, ParseError> {
        match self.peek() {
            Some(Tok::Name(n)) if n != "in" => {
                let n = n.clone();
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > DEPTH_MAX {
            return Err(ParseError::TooDeep);
        }
        let e = match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Expr::Not(Box::new(self.unary()?))
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(self.unexpected("`)`"));
                }
                self.pos += 1;
                e
            }
            _ => self.atom()?,
        };
        self.depth -= 1;
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let key = self.name("a tag name, `!` or `(`")?;
        match self.peek() {
            Some(Tok::Name(n)) if n == "in" => {
                self.pos += 1;
                if self.peek() != Some(&Tok::LBracket) {
                    return Err(self.unexpected("`[`"));
                }
                self.pos += 1;
                let mut values = vec![self.name("a tag value")?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    values.push(self.name("a tag value")?);
                }
                if self.peek() != Some(&Tok::RBracket) {
                    return Err(self.unexpected("`,` or `]`"));
                }
                self.pos += 1;
                Ok(Expr::In(key, values))
            }
            Some(Tok::EqEq) => {
                self.pos += 1;
                Ok(Expr::Eq(key, self.name("a tag value")?))
            }
            Some(Tok::NotEq) => {
                self.pos += 1;
                let value = self.name("a tag value")?;
                Ok(Expr::Not(Box::new(Expr::Eq(key, value))))
            }
            _ => Ok(Expr::Has(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tags(list: &[(&str, &str)]) -> Tags {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_issue_example_parses_and_evaluates() {
        let e = Expr::parse("region in [eu, us] && kyc && !country:fr").unwrap();
        assert!(e.eval(&tags(&[("region", "eu"), ("kyc", "")])));
        assert!(e.eval(&tags(&[("region", "us"), ("kyc", ""), ("country", "de")])));
        assert!(!e.eval(&tags(&[("region", "eu"), ("kyc", ""), ("country:fr", "")])));
        assert!(!e.eval(&tags(&[("region", "eu"), ("kyc", ""), ("country", "fr")])));
        assert!(!e.eval(&tags(&[("region", "ap"), ("kyc", "")])));
        assert!(!e.eval(&tags(&[("region", "eu")])));
    }

    #[test]
    fn precedence_and_parentheses() {
        let t = tags(&[("a", "")]);
        assert!(Expr::parse("a || b && c").unwrap().eval(&t));
        assert!(!Expr::parse("(a || b) && c").unwrap().eval(&t));
        assert!(Expr::parse("tier != gold").unwrap().eval(&t));
        assert!(Expr::parse("").unwrap().eval(&t));
        assert_eq!(Expr::parse("  ").unwrap(), Expr::True);
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(
            Expr::parse("region in eu"),
            Err(ParseError::Unexpected {
                at: 10,
                expected: "`[`",
                found: "`eu`".into()
            })
        );
        assert!(matches!(
            Expr::parse("a && "),
            Err(ParseError::Unexpected { at: 5, .. })
        ));
        assert!(matches!(
            Expr::parse("a $ b"),
            Err(ParseError::Unexpected { at: 2, .. })
        ));
        assert!(matches!(
            Expr::parse("(a"),
            Err(ParseError::Unexpected { .. })
        ));
        assert!(matches!(
            Expr::parse("a b"),
            Err(ParseError::Unexpected { .. })
        ));
        assert_eq!(
            Expr::parse(&format!("{}a", "!".repeat(100))),
            Err(ParseError::TooDeep)
        );
        assert!(matches!(
            Expr::parse(&"a".repeat(EXPR_BYTES_MAX + 1)),
            Err(ParseError::TooLong(_))
        ));
    }

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "kyc", "region", "x:y", "eu", "us"])
            .prop_map(String::from)
    }

    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            name().prop_map(Expr::Has),
            (name(), prop::collection::vec(name(), 1..3)).prop_map(|(k, v)| Expr::In(k, v)),
            (name(), name()).prop_map(|(k, v)| Expr::Eq(k, v)),
        ];
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
            ]
        })
    }

    fn tag_set() -> impl Strategy<Value = Tags> {
        prop::collection::btree_map(
            name(),
            prop::sample::select(vec!["", "eu", "us", "y"]).prop_map(String::from),
            0..4,
        )
    }

    proptest! {
        #[test]
        fn printing_then_parsing_means_the_same(e in expr(), t in tag_set()) {
            let printed = e.to_string();
            let parsed = Expr::parse(&printed).map_err(|err| TestCaseError::fail(format!("{printed}: {err}")))?;
            prop_assert_eq!(parsed.eval(&t), e.eval(&t), "{}", printed);
        }

        #[test]
        fn negation_flips(e in expr(), t in tag_set()) {
            let not = Expr::parse(&format!("!({e})")).unwrap();
            prop_assert_eq!(not.eval(&t), !e.eval(&t));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,64}") {
            let _ = Expr::parse(&s);
        }
    }
}
