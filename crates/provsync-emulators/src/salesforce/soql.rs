//! The SOQL subset a loader needs: `SELECT f1, Rel.f2 | COUNT() FROM Obj [WHERE cond
//! AND cond ...] [ORDER BY f [ASC|DESC]] [LIMIT n]`, where a condition is `f = v`,
//! `f != v`, `f <> v`, `f < v` (and `<=`, `>`, `>=`), `f IN (v, ...)`, `f NOT IN (...)`
//! and `v` a quoted string, number, date, true/false or null. Anything else is
//! `MALFORMED_QUERY`, as the real parser says of syntax it does not accept.

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A quoted string.
    Str(String),
    /// A number, date or datetime written bare.
    Bare(String),
}

/// A comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmp {
    /// `=`.
    Eq(Lit),
    /// `!=` or `<>`.
    Ne(Lit),
    /// `<`.
    Lt(Lit),
    /// `<=`.
    Le(Lit),
    /// `>`.
    Gt(Lit),
    /// `>=`.
    Ge(Lit),
    /// `IN (...)`.
    In(Vec<Lit>),
    /// `NOT IN (...)`.
    NotIn(Vec<Lit>),
}

/// One condition of the AND-combined WHERE clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// Field (possibly `Relationship.Field`).
    pub field: String,
    /// Comparison.
    pub cmp: Cmp,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `None` for `COUNT()`, else the selected fields.
    pub fields: Option<Vec<String>>,
    /// The object.
    pub object: String,
    /// AND-combined conditions.
    pub conditions: Vec<Cond>,
    /// `ORDER BY` field and descending flag.
    pub order_by: Option<(String, bool)>,
    /// `LIMIT`.
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Bare(String),
    Punct(&'static str),
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Bare(w) => w.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Punct(p) => (*p).to_owned(),
        }
    }
}

fn tokens(q: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '-' | ':' | '.' | '+'))
            {
                i += 1;
            }
            out.push(Tok::Bare(chars[start..i].iter().collect()));
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\\') => {
                        let e = chars.get(i + 1).ok_or("unterminated string literal")?;
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => *other,
                        });
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let p = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("<>"),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(p) = p {
                out.push(Tok::Punct(p));
                i += 2;
                continue;
            }
            let p = match c {
                ',' => ",",
                '(' => "(",
                ')' => ")",
                '=' => "=",
                '<' => "<",
                '>' => ">",
                other => return Err(format!("unexpected token: '{other}'")),
            };
            out.push(Tok::Punct(p));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn unexpected(&self) -> String {
        match self.peek() {
            Some(t) => format!("unexpected token: '{}'", t.text()),
            None => "unexpected end of query".into(),
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), String> {
        if self.is_kw(kw) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect_punct(&mut self, p: &str) -> Result<(), String> {
        if matches!(self.peek(), Some(Tok::Punct(q)) if *q == p) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Word(w)) if !is_reserved(w) => {
                let w = w.clone();
                self.at += 1;
                Ok(w)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn literal(&mut self) -> Result<Lit, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Bare(b)) => Ok(Lit::Bare(b)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(Lit::Null),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Lit::Bool(true)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Lit::Bool(false)),
            Some(t) => Err(format!("unexpected token: '{}'", t.text())),
            None => Err("unexpected end of query".into()),
        }
    }

    fn list(&mut self) -> Result<Vec<Lit>, String> {
        self.expect_punct("(")?;
        let mut out = vec![self.literal()?];
        while matches!(self.peek(), Some(Tok::Punct(","))) {
            self.at += 1;
            out.push(self.literal()?);
        }
        self.expect_punct(")")?;
        Ok(out)
    }

    fn condition(&mut self) -> Result<Cond, String> {
        let field = self.ident()?;
        let cmp = match self.next() {
            Some(Tok::Punct("=")) => Cmp::Eq(self.literal()?),
            Some(Tok::Punct("!=" | "<>")) => Cmp::Ne(self.literal()?),
            Some(Tok::Punct("<")) => Cmp::Lt(self.literal()?),
            Some(Tok::Punct("<=")) => Cmp::Le(self.literal()?),
            Some(Tok::Punct(">")) => Cmp::Gt(self.literal()?),
            Some(Tok::Punct(">=")) => Cmp::Ge(self.literal()?),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => Cmp::In(self.list()?),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") => {
                self.expect_kw("in")?;
                Cmp::NotIn(self.list()?)
            }
            Some(t) => return Err(format!("unexpected token: '{}'", t.text())),
            None => return Err("unexpected end of query".into()),
        };
        Ok(Cond { field, cmp })
    }
}

fn is_reserved(w: &str) -> bool {
    [
        "select", "from", "where", "and", "or", "not", "in", "order", "by", "limit", "asc", "desc",
        "null", "true", "false", "offset", "group", "having",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

/// Parses a query; `Err` is the `MALFORMED_QUERY` message.
pub fn parse(q: &str) -> Result<Query, String> {
    let mut p = Parser {
        toks: tokens(q)?,
        at: 0,
    };
    p.expect_kw("select")?;
    let fields = if p.is_kw("count") {
        p.at += 1;
        p.expect_punct("(")?;
        p.expect_punct(")")?;
        None
    } else {
        let mut fields = vec![p.ident()?];
        while matches!(p.peek(), Some(Tok::Punct(","))) {
            p.at += 1;
            fields.push(p.ident()?);
        }
        Some(fields)
    };
    p.expect_kw("from")?;
    let object = p.ident()?;
    let mut conditions = Vec::new();
    if p.is_kw("where") {
        p.at += 1;
        conditions.push(p.condition()?);
        while p.is_kw("and") {
            p.at += 1;
            conditions.push(p.condition()?);
        }
    }
    let mut order_by = None;
    if p.is_kw("order") {
        p.at += 1;
        p.expect_kw("by")?;
        let f = p.ident()?;
        let desc = if p.is_kw("desc") {
            p.at += 1;
            true
        } else {
            if p.is_kw("asc") {
                p.at += 1;
            }
            false
        };
        order_by = Some((f, desc));
    }
    let mut limit = None;
    if p.is_kw("limit") {
        p.at += 1;
        match p.next() {
            Some(Tok::Bare(n)) => {
                limit = Some(
                    n.parse::<usize>()
                        .map_err(|_| format!("unexpected token: '{n}'"))?,
                )
            }
            Some(t) => return Err(format!("unexpected token: '{}'", t.text())),
            None => return Err("unexpected end of query".into()),
        }
    }
    if p.peek().is_some() {
        return Err(p.unexpected());
    }
    Ok(Query {
        fields,
        object,
        conditions,
        order_by,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_loader_subset() {
        let q = parse(
            "SELECT Id, OneKey_Id__c, Account.OneKey_Id__c FROM HealthcareProvider \
             WHERE OneKey_Id__c IN ('a','b\\'c') AND IsActive = true AND AccountId != null \
             ORDER BY Name DESC LIMIT 10",
        )
        .unwrap();
        assert_eq!(q.fields.as_ref().unwrap().len(), 3);
        assert_eq!(q.object, "HealthcareProvider");
        assert_eq!(
            q.conditions[0].cmp,
            Cmp::In(vec![Lit::Str("a".into()), Lit::Str("b'c".into())])
        );
        assert_eq!(q.conditions[1].cmp, Cmp::Eq(Lit::Bool(true)));
        assert_eq!(q.conditions[2].cmp, Cmp::Ne(Lit::Null));
        assert_eq!(q.order_by, Some(("Name".into(), true)));
        assert_eq!(q.limit, Some(10));
        assert_eq!(parse("select count() from Account").unwrap().fields, None);
    }

    #[test]
    fn unsupported_syntax_is_malformed() {
        for q in [
            "SELECT Id FROM Account WHERE Name = 'a' OR Name = 'b'",
            "SELECT Id FROM",
            "SELECT FROM Account",
            "SELECT Id FROM Account LIMIT x",
            "SELECT Id FROM Account WHERE Name = 'open",
            "SELECT Id FROM Account GROUP BY Name",
            "DELETE FROM Account",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
    }

    proptest! {
        #[test]
        fn quoted_values_round_trip(s in "[ -~]{0,40}") {
            let quoted = s.replace('\\', "\\\\").replace('\'', "\\'");
            let q = parse(&format!("SELECT Id FROM Account WHERE Name = '{quoted}'")).unwrap();
            prop_assert_eq!(&q.conditions[0].cmp, &Cmp::Eq(Lit::Str(s.clone())));
        }

        #[test]
        fn in_lists_keep_every_value(values in proptest::collection::vec("[A-Za-z0-9]{1,12}", 1..50)) {
            let list: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
            let q = parse(&format!("SELECT Id FROM Account WHERE OneKey_Id__c IN ({})", list.join(","))).unwrap();
            let expected: Vec<Lit> = values.iter().map(|v| Lit::Str(v.clone())).collect();
            prop_assert_eq!(&q.conditions[0].cmp, &Cmp::In(expected));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s);
        }
    }
}
