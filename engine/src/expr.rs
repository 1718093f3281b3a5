//! Conditions and assignee rules: CEL expressions over `project`.
//!
//! This module owns the expression layer of the workflow language, both halves of it:
//!
//! - [`Expr`]: a parsed CEL program and its evaluation against a project record (JSON), for the
//!   runtime (`eval_bool` for conditions, `eval_string` for assignee rules).
//! - [`check`]: a static type checker over the CEL AST against the workflow's `fields`, for the
//!   validator. The `cel` crate only checks at run time; policy staff need to hear about
//!   `project.tier > 3` or a misspelt enum value when they publish, not when a project hits it.
//!
//! The checker is practical, not a full CEL checker: it knows the operators, literals, lists,
//! ternaries, the comprehension macros (`exists`, `all`, `map`, `filter`), `has()`, `size()`, the
//! string functions `contains`/`startsWith`/`endsWith` and the conversions `int`, `double`,
//! `string`. Anything it does not know is an error, so what passes here also runs.
//!
//! Types follow CEL, which never converts between `int` and `double` in arithmetic (comparisons
//! across numeric types are fine). A `number` field is a CEL `double`; [`Expr::parse_with_fields`]
//! makes evaluation read it as one even when the JSON holds `5000`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{CallExpr, ComprehensionExpr, Expr as Ast, IdedExpr, LiteralValue};
use cel::objects::Key;
use cel::{Context, Env, Program, Value};

use crate::model::{FieldDef, FieldType};

/// The one variable expressions may read.
pub const PROJECT: &str = "project";

/// A parsed CEL expression, ready to evaluate. Cheap to clone.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    program: Arc<Program>,
    /// Fields declared `number`: read as CEL `double` whatever the JSON spelling.
    number_fields: Arc<HashSet<String>>,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

/// The standard CEL environment, built once: building it registers every stdlib overload.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

impl Expr {
    /// Parses CEL source. JSON numbers of the project are read as `int` when integral.
    pub fn parse(src: &str) -> Result<Expr, String> {
        let program = env()
            .compile(src)
            .map_err(|e| format!("`{src}` does not parse: {}", parse_message(&e)))?;
        Ok(Expr {
            source: Arc::from(src),
            program: Arc::new(program),
            number_fields: Arc::new(HashSet::new()),
        })
    }

    /// Parses CEL source for a workflow with these fields, so that `number` fields evaluate as
    /// `double` (as [`check`] typed them) even when the project holds an integral value.
    pub fn parse_with_fields(src: &str, fields: &[FieldDef]) -> Result<Expr, String> {
        let mut e = Expr::parse(src)?;
        e.number_fields = Arc::new(
            fields
                .iter()
                .filter(|f| f.ty.value == FieldType::Number)
                .map(|f| f.id.value.clone())
                .collect(),
        );
        Ok(e)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with `project` bound to the given JSON object.
    pub fn eval(&self, project: &serde_json::Value) -> Result<Value, String> {
        let mut ctx = Context::with_env(env().clone());
        ctx.add_variable_from_value(PROJECT, self.project_value(project));
        self.program
            .execute(&ctx)
            .map_err(|e| format!("`{}` failed: {e}", self.source))
    }

    /// Evaluates a condition.
    pub fn eval_bool(&self, project: &serde_json::Value) -> Result<bool, String> {
        match self.eval(project)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "`{}` gave {}, not true or false",
                self.source,
                other.type_of()
            )),
        }
    }

    /// Evaluates an assignee rule.
    pub fn eval_string(&self, project: &serde_json::Value) -> Result<String, String> {
        match self.eval(project)? {
            Value::String(s) => Ok(s.as_ref().clone()),
            other => Err(format!(
                "`{}` gave {}, not a string",
                self.source,
                other.type_of()
            )),
        }
    }

    fn project_value(&self, project: &serde_json::Value) -> Value {
        match project {
            serde_json::Value::Object(m) => {
                let map: HashMap<Key, Value> = m
                    .iter()
                    .map(|(k, v)| {
                        let val = match v {
                            serde_json::Value::Number(n) if self.number_fields.contains(k) => {
                                Value::Float(n.as_f64().unwrap_or(f64::NAN))
                            }
                            other => json_to_cel(other),
                        };
                        (Key::from(k.clone()), val)
                    })
                    .collect();
                Value::from(map)
            }
            other => json_to_cel(other),
        }
    }
}

/// JSON to CEL: integral numbers become `int` (or `uint` beyond i64), others `double`.
pub fn json_to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        serde_json::Value::Object(m) => {
            let map: HashMap<Key, Value> = m
                .iter()
                .map(|(k, v)| (Key::from(k.clone()), json_to_cel(v)))
                .collect();
            Value::from(map)
        }
    }
}

fn parse_message(e: &cel::ParseErrors) -> String {
    e.errors
        .iter()
        .map(|p| {
            if p.pos.1 > 0 {
                format!("{} (column {})", p.msg, p.pos.1 + 1)
            } else {
                p.msg.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ------------------------------------------------------------------------------------------------
// Static checking
// ------------------------------------------------------------------------------------------------

/// The type of an expression, as far as the workflow cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprType {
    Bool,
    Int,
    /// CEL `double`: a `number` field or a literal such as `1.5`.
    Number,
    /// Strings, and the string-valued fields: date, enum, user.
    String,
    List,
    Map,
    Null,
    /// Not known statically (e.g. an element of a map); accepted wherever a value is.
    Dyn,
}

impl fmt::Display for ExprType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ExprType::Bool => "bool",
            ExprType::Int => "int",
            ExprType::Number => "number",
            ExprType::String => "string",
            ExprType::List => "list",
            ExprType::Map => "map",
            ExprType::Null => "null",
            ExprType::Dyn => "dyn",
        };
        f.write_str(s)
    }
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprError {
    /// Not CEL at all.
    Syntax(String),
    /// CEL, but wrong for the workflow's fields or for its place.
    Type(String),
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExprError::Syntax(m) | ExprError::Type(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ExprError {}

/// Checks `src` against the workflow's fields and the type its place expects (`Bool` for a
/// condition, `String` for an assignee rule). Returns the type found, or what is wrong.
pub fn check(src: &str, fields: &[FieldDef], expected: ExprType) -> Result<ExprType, String> {
    check_detailed(src, fields, expected).map_err(|e| e.to_string())
}

/// [`check`], telling a syntax error from a type error (the validator gives them different codes).
/// Parses once.
pub fn check_detailed(
    src: &str,
    fields: &[FieldDef],
    expected: ExprType,
) -> Result<ExprType, ExprError> {
    let program = env()
        .compile(src)
        .map_err(|e| ExprError::Syntax(format!("`{src}` does not parse: {}", parse_message(&e))))?;
    let checker = Checker {
        src,
        info: program.source_info(),
        fields,
    };
    let mut scope = Vec::new();
    let ty = checker
        .ty(program.expression(), &mut scope)
        .map_err(ExprError::Type)?;
    let found = ty.public();
    if expected != ExprType::Dyn && found != ExprType::Dyn && found != expected {
        let what = match expected {
            ExprType::Bool => "a condition must be true or false".to_string(),
            ExprType::String => "an assignee rule must give a user name or `dept:<id>`".to_string(),
            other => format!("expected {other}"),
        };
        return Err(ExprError::Type(format!("`{src}` is {}: {what}", ty.name())));
    }
    Ok(found)
}

/// The optional fields (not `required`) an expression reads without testing them with
/// `has(project.<field>)` anywhere in it, in the order they are read. An assignee rule must
/// name someone for every project, so validation refuses a rule that would fail on a project
/// that leaves such a field unset (a condition need not: one that cannot be evaluated does not
/// hold). Empty when the source does not parse (the syntax error is reported on its own).
pub fn unguarded_optional_reads(src: &str, fields: &[FieldDef]) -> Vec<String> {
    let Ok(program) = env().compile(src) else {
        return Vec::new();
    };
    let (mut read, mut tested) = (Vec::new(), HashSet::new());
    project_reads(program.expression(), &mut read, &mut tested);
    let optional = |name: &str| fields.iter().any(|f| f.id.value == name && !f.required);
    let mut out: Vec<String> = Vec::new();
    for f in read {
        if optional(&f) && !tested.contains(&f) && !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Collects `project.<field>` reads and `has(project.<field>)` tests of a subtree.
fn project_reads(e: &IdedExpr, read: &mut Vec<String>, tested: &mut HashSet<String>) {
    match &e.expr {
        Ast::Select(s) => {
            if matches!(&s.operand.expr, Ast::Ident(n) if n == PROJECT) {
                if s.test {
                    tested.insert(s.field.clone());
                } else {
                    read.push(s.field.clone());
                }
            } else {
                project_reads(&s.operand, read, tested);
            }
        }
        Ast::Call(c) => {
            if let Some(t) = &c.target {
                project_reads(t, read, tested);
            }
            for a in &c.args {
                project_reads(a, read, tested);
            }
        }
        Ast::List(l) => {
            for x in &l.elements {
                project_reads(x, read, tested);
            }
        }
        Ast::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    project_reads(&me.key, read, tested);
                    project_reads(&me.value, read, tested);
                }
            }
        }
        Ast::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                project_reads(x, read, tested);
            }
        }
        _ => {}
    }
}

/// The checker's own types: richer than [`ExprType`] so that enum and date literals can be
/// checked against the field they are compared with.
#[derive(Debug, Clone)]
enum Ty<'a> {
    Bool,
    Int,
    UInt,
    Double,
    Str,
    Date,
    User,
    Enum(&'a FieldDef),
    List(Box<Ty<'a>>),
    Map,
    Null,
    Dyn,
}

impl PartialEq for Ty<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Ty::Enum(a), Ty::Enum(b)) => a.id.value == b.id.value,
            (Ty::List(a), Ty::List(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Ty<'_> {
    fn public(&self) -> ExprType {
        match self {
            Ty::Bool => ExprType::Bool,
            Ty::Int | Ty::UInt => ExprType::Int,
            Ty::Double => ExprType::Number,
            Ty::Str | Ty::Date | Ty::User | Ty::Enum(_) => ExprType::String,
            Ty::List(_) => ExprType::List,
            Ty::Map => ExprType::Map,
            Ty::Null => ExprType::Null,
            Ty::Dyn => ExprType::Dyn,
        }
    }

    fn name(&self) -> String {
        match self {
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::UInt => "uint".into(),
            Ty::Double => "number".into(),
            Ty::Str => "string".into(),
            Ty::Date => "date".into(),
            Ty::User => "user".into(),
            Ty::Enum(f) => format!("enum `{}`", f.id.value),
            Ty::List(e) => format!("list of {}", e.name()),
            Ty::Map => "map".into(),
            Ty::Null => "null".into(),
            Ty::Dyn => "dyn".into(),
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::UInt | Ty::Double)
    }

    fn is_stringy(&self) -> bool {
        matches!(self, Ty::Str | Ty::Date | Ty::User | Ty::Enum(_))
    }

    fn is_dyn(&self) -> bool {
        matches!(self, Ty::Dyn)
    }
}

fn field_ty(f: &FieldDef) -> Ty<'_> {
    match f.ty.value {
        FieldType::String => Ty::Str,
        FieldType::Number => Ty::Double,
        FieldType::Int => Ty::Int,
        FieldType::Bool => Ty::Bool,
        FieldType::Date => Ty::Date,
        FieldType::Enum => Ty::Enum(f),
        FieldType::User => Ty::User,
        FieldType::List => Ty::List(Box::new(Ty::Str)),
    }
}

/// The typed operands of a comparison (`==`, `<`, `in`): `e` is the whole expression, named in
/// the messages.
struct Operands<'x, 'a> {
    e: &'x IdedExpr,
    a: &'x IdedExpr,
    ta: Ty<'a>,
    b: &'x IdedExpr,
    tb: Ty<'a>,
}

struct Checker<'a> {
    src: &'a str,
    info: &'a cel::common::ast::SourceInfo,
    fields: &'a [FieldDef],
}

/// Comprehension variables in scope, innermost last.
type Scope<'a> = Vec<(String, Ty<'a>)>;

impl<'a> Checker<'a> {
    /// The source text of a node, for messages. The parser records one offset per node (often
    /// just its operator), so take the span of the whole subtree and widen it to whole tokens.
    fn text(&self, e: &IdedExpr) -> String {
        let mut range: Option<(usize, usize)> = None;
        subtree_offsets(e, self.info, &mut range);
        let snippet = range.and_then(|(mut a, b)| {
            // A function call is recorded at its `(`: step back over the function's name.
            while let Some(c) = self.src.get(..a).and_then(|l| l.chars().next_back()) {
                if c.is_alphanumeric() || c == '_' {
                    a -= c.len_utf8();
                } else {
                    break;
                }
            }
            let bytes = self.src.as_bytes();
            let mut end = b.min(self.src.len());
            // `b` is where the last recorded token starts: step over it, then over identifier
            // characters (a selected field's name is not recorded), then close open brackets.
            while end < self.src.len() && !self.src.is_char_boundary(end + 1) {
                end += 1;
            }
            end = (end + 1).min(self.src.len());
            while let Some(c) = self.src.get(end..).and_then(|r| r.chars().next()) {
                if c.is_alphanumeric()
                    || c == '_'
                    || c == '.'
                    || c == '"' && bytes.get(a) == Some(&b'"')
                {
                    end += c.len_utf8();
                    if c == '"' {
                        break;
                    }
                } else {
                    break;
                }
            }
            let mut text = self.src.get(a..end)?.to_string();
            let open = text.matches(['(', '[']).count();
            let close = text.matches([')', ']']).count();
            let rest = self.src.get(end..).unwrap_or("");
            let mut extra = open.saturating_sub(close);
            for c in rest.chars() {
                if extra == 0 {
                    break;
                }
                text.push(c);
                if c == ')' || c == ']' {
                    extra -= 1;
                }
            }
            Some(text.trim().to_string())
        });
        snippet
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| describe(&e.expr))
    }

    fn ty(&self, e: &IdedExpr, scope: &mut Scope<'a>) -> Result<Ty<'a>, String> {
        match &e.expr {
            Ast::Literal(l) => Ok(literal_ty(l)),
            Ast::Ident(name) => self.ident(name, scope),
            Ast::Select(sel) => {
                let is_project = matches!(&sel.operand.expr, Ast::Ident(n) if n == PROJECT
                    && !scope.iter().any(|(v, _)| v == PROJECT));
                if is_project {
                    let f = self.field(&sel.field)?;
                    return Ok(if sel.test { Ty::Bool } else { field_ty(f) });
                }
                let base = self.ty(&sel.operand, scope)?;
                match base {
                    Ty::Map | Ty::Dyn => Ok(if sel.test { Ty::Bool } else { Ty::Dyn }),
                    other => Err(format!(
                        "`{}`: {} has no field `{}`",
                        self.text(e),
                        other.name(),
                        sel.field
                    )),
                }
            }
            Ast::List(l) => {
                let mut elem: Option<Ty<'a>> = None;
                for item in &l.elements {
                    let t = self.ty(item, scope)?;
                    elem = Some(match elem {
                        None => t,
                        Some(prev) => unify(prev, t),
                    });
                }
                Ok(Ty::List(Box::new(elem.unwrap_or(Ty::Dyn))))
            }
            Ast::Map(m) => {
                for entry in &m.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                        self.ty(&me.key, scope)?;
                        self.ty(&me.value, scope)?;
                    }
                }
                Ok(Ty::Map)
            }
            Ast::Call(call) => self.call(e, call, scope),
            Ast::Comprehension(c) => self.comprehension(c, scope),
            Ast::Struct(s) => Err(format!(
                "`{}`: message literals (`{}{{...}}`) are not supported",
                self.text(e),
                s.type_name
            )),
            Ast::Unspecified => Err(format!("`{}` is incomplete", self.src)),
        }
    }

    fn ident(&self, name: &str, scope: &Scope<'a>) -> Result<Ty<'a>, String> {
        if let Some((_, t)) = scope.iter().rev().find(|(v, _)| v == name) {
            return Ok(t.clone());
        }
        if name == PROJECT {
            return Ok(Ty::Map);
        }
        Err(format!(
            "unknown name `{name}`: expressions read the project's fields as `project.<field>`"
        ))
    }

    fn field(&self, name: &str) -> Result<&'a FieldDef, String> {
        self.fields
            .iter()
            .find(|f| f.id.value == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.fields.iter().map(|f| f.id.value.as_str()).collect();
                if known.is_empty() {
                    format!("unknown field `project.{name}`: the workflow declares no fields")
                } else {
                    format!(
                        "unknown field `project.{name}`; the fields are: {}",
                        known.join(", ")
                    )
                }
            })
    }

    fn comprehension(
        &self,
        c: &ComprehensionExpr,
        scope: &mut Scope<'a>,
    ) -> Result<Ty<'a>, String> {
        let range = self.ty(&c.iter_range, scope)?;
        let elem = match &range {
            Ty::List(e) => (**e).clone(),
            Ty::Map | Ty::Dyn => Ty::Dyn,
            other => {
                return Err(format!(
                    "`{}` is {}, which cannot be iterated",
                    self.text(&c.iter_range),
                    other.name()
                ));
            }
        };
        let init = self.ty(&c.accu_init, scope)?;
        let depth = scope.len();
        scope.push((c.accu_var.clone(), init.clone()));
        scope.push((c.iter_var.clone(), elem));
        if let Some(v2) = &c.iter_var2 {
            scope.push((v2.clone(), Ty::Dyn));
        }
        let checked = (|| {
            self.ty(&c.loop_cond, scope)?;
            let step = self.ty(&c.loop_step, scope)?;
            // The accumulator keeps the type of its initial value when the step agrees.
            if let Some(slot) = scope.get_mut(depth) {
                slot.1 = unify(init, step);
            }
            self.ty(&c.result, scope)
        })();
        scope.truncate(depth);
        checked
    }

    fn call(&self, e: &IdedExpr, call: &CallExpr, scope: &mut Scope<'a>) -> Result<Ty<'a>, String> {
        use cel::common::ast::operators as op;
        let name = call.func_name.as_str();
        let args = &call.args;
        match (name, call.target.as_deref(), args.as_slice()) {
            (op::LOGICAL_AND | op::LOGICAL_OR, None, [a, b]) => {
                self.expect_bool(a, scope)?;
                self.expect_bool(b, scope)?;
                Ok(Ty::Bool)
            }
            (op::LOGICAL_NOT | op::NOT_STRICTLY_FALSE, None, [a]) => {
                self.expect_bool(a, scope)?;
                Ok(Ty::Bool)
            }
            (op::EQUALS | op::NOT_EQUALS, None, [a, b]) => {
                self.comparable(&self.operands(e, a, b, scope)?)?;
                Ok(Ty::Bool)
            }
            (op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS, None, [a, b]) => {
                self.ordered(&self.operands(e, a, b, scope)?)?;
                Ok(Ty::Bool)
            }
            (op::IN, None, [a, b]) => {
                self.membership(&self.operands(e, a, b, scope)?)?;
                Ok(Ty::Bool)
            }
            (op::CONDITIONAL, None, [c, t, f]) => {
                self.expect_bool(c, scope)?;
                let (tt, tf) = (self.ty(t, scope)?, self.ty(f, scope)?);
                if !compatible(&tt, &tf) {
                    return Err(format!(
                        "`{}`: the two branches differ in type ({} and {})",
                        self.text(e),
                        tt.name(),
                        tf.name()
                    ));
                }
                Ok(unify(tt, tf))
            }
            (op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO, None, [a, b]) => {
                let (ta, tb) = (self.ty(a, scope)?, self.ty(b, scope)?);
                self.arithmetic(e, name, ta, tb)
            }
            (op::NEGATE, None, [a]) => match self.ty(a, scope)? {
                t @ (Ty::Int | Ty::Double | Ty::Dyn) => Ok(t),
                t => Err(format!("`{}`: cannot negate {}", self.text(e), t.name())),
            },
            (op::INDEX, None, [a, i]) => {
                let (ta, ti) = (self.ty(a, scope)?, self.ty(i, scope)?);
                match ta {
                    Ty::List(elem) if matches!(ti, Ty::Int | Ty::UInt | Ty::Dyn) => Ok(*elem),
                    Ty::Map | Ty::Dyn => Ok(Ty::Dyn),
                    other => Err(format!(
                        "`{}`: cannot index {} with {}",
                        self.text(e),
                        other.name(),
                        ti.name()
                    )),
                }
            }
            ("has", None, [_]) => Ok(Ty::Bool),
            ("size", target, rest) => {
                let arg = match (target, rest) {
                    (Some(t), []) | (None, [t]) => t,
                    _ => return Err(self.arity(e, "size", 1)),
                };
                match self.ty(arg, scope)? {
                    t if t.is_stringy() || matches!(t, Ty::List(_) | Ty::Map | Ty::Dyn) => {
                        Ok(Ty::Int)
                    }
                    t => Err(format!("`{}`: size() of {}", self.text(e), t.name())),
                }
            }
            ("contains" | "startsWith" | "endsWith", Some(t), [arg]) => {
                let (tt, ta) = (self.ty(t, scope)?, self.ty(arg, scope)?);
                let ok = |x: &Ty| x.is_stringy() || x.is_dyn();
                if !ok(&tt) || !ok(&ta) {
                    return Err(format!(
                        "`{}`: {name}() works on strings, not {} and {}",
                        self.text(e),
                        tt.name(),
                        ta.name()
                    ));
                }
                Ok(Ty::Bool)
            }
            ("int" | "double" | "string" | "uint" | "bool", None, [a]) => {
                let t = self.ty(a, scope)?;
                if matches!(t, Ty::List(_) | Ty::Map) {
                    return Err(format!("`{}`: cannot convert {}", self.text(e), t.name()));
                }
                Ok(match name {
                    "int" => Ty::Int,
                    "double" => Ty::Double,
                    "uint" => Ty::UInt,
                    "bool" => Ty::Bool,
                    _ => Ty::Str,
                })
            }
            (
                "contains" | "startsWith" | "endsWith" | "int" | "double" | "string" | "uint"
                | "bool",
                _,
                _,
            ) => Err(self.arity(e, name, 1)),
            _ => Err(format!(
                "unknown function `{}` in `{}`; available: size, contains, startsWith, endsWith, \
                 int, double, string, has, exists, all, map, filter",
                name.trim_matches('_'),
                self.src
            )),
        }
    }

    fn arity(&self, e: &IdedExpr, name: &str, n: usize) -> String {
        format!(
            "`{}`: {name}() takes {n} argument{}",
            self.text(e),
            if n == 1 { "" } else { "s" }
        )
    }

    fn expect_bool(&self, e: &IdedExpr, scope: &mut Scope<'a>) -> Result<(), String> {
        match self.ty(e, scope)? {
            Ty::Bool | Ty::Dyn => Ok(()),
            t => Err(format!(
                "`{}` is {}, not true or false",
                self.text(e),
                t.name()
            )),
        }
    }

    /// `==` / `!=`: the sides must be of comparable types, and a literal compared with an enum
    /// or date field must be a value that field can hold.
    fn comparable(&self, o: &Operands<'_, 'a>) -> Result<(), String> {
        let Operands { e, ta, tb, .. } = o;
        if !compatible(ta, tb) && *ta != Ty::Null && *tb != Ty::Null {
            return Err(format!(
                "`{}` compares {} with {}",
                self.text(e),
                ta.name(),
                tb.name()
            ));
        }
        self.literals_fit(o)
    }

    fn ordered(&self, o: &Operands<'_, 'a>) -> Result<(), String> {
        let Operands { e, ta, tb, .. } = o;
        for t in [ta, tb] {
            if let Ty::Enum(f) = t {
                return Err(format!(
                    "`{}`: enum field `{}` has no order; compare with == or `in`",
                    self.text(e),
                    f.id.value
                ));
            }
        }
        let ok = ta.is_dyn()
            || tb.is_dyn()
            || (ta.is_numeric() && tb.is_numeric())
            || (ta.is_stringy() && tb.is_stringy());
        if !ok {
            return Err(format!(
                "`{}` orders {} against {}",
                self.text(e),
                ta.name(),
                tb.name()
            ));
        }
        self.literals_fit(o)
    }

    fn membership(&self, o: &Operands<'_, 'a>) -> Result<(), String> {
        let Operands { e, a, ta, b, tb } = o;
        match tb {
            Ty::List(elem) => {
                if !compatible(ta, elem) {
                    return Err(format!(
                        "`{}`: looks for {} in a {}",
                        self.text(e),
                        ta.name(),
                        tb.name()
                    ));
                }
                if let Ast::List(l) = &b.expr {
                    for item in &l.elements {
                        self.literal_fits(ta, item)?;
                    }
                }
                self.literal_fits(elem, a)
            }
            Ty::Map | Ty::Dyn => Ok(()),
            other => Err(format!(
                "`{}`: `in` needs a list on the right, not {}",
                self.text(e),
                other.name()
            )),
        }
    }

    /// The two operands of a binary operator typed, with the whole expression for messages.
    fn operands<'x>(
        &self,
        e: &'x IdedExpr,
        a: &'x IdedExpr,
        b: &'x IdedExpr,
        scope: &mut Scope<'a>,
    ) -> Result<Operands<'x, 'a>, String> {
        Ok(Operands {
            e,
            a,
            ta: self.ty(a, scope)?,
            b,
            tb: self.ty(b, scope)?,
        })
    }

    /// Each operand's string literal fits the other's type (`tier == "重点"` on an enum).
    fn literals_fit(&self, o: &Operands<'_, 'a>) -> Result<(), String> {
        self.literal_fits(&o.ta, o.b)?;
        self.literal_fits(&o.tb, o.a)
    }

    /// A string literal placed against an enum must be one of its values; against a date it
    /// must be `YYYY-MM-DD`.
    fn literal_fits(&self, against: &Ty<'a>, lit: &IdedExpr) -> Result<(), String> {
        let Ast::Literal(LiteralValue::String(s)) = &lit.expr else {
            return Ok(());
        };
        let s: &str = s.inner();
        match against {
            Ty::Enum(f) if !f.values.iter().any(|v| v.value == s) => Err(format!(
                "\"{s}\" is not a value of enum field `{}`; its values are: {}",
                f.id.value,
                f.values
                    .iter()
                    .map(|v| v.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Ty::Date if s.parse::<jiff::civil::Date>().is_err() => Err(format!(
                "\"{s}\" is not a date: write dates as \"YYYY-MM-DD\""
            )),
            _ => Ok(()),
        }
    }

    fn arithmetic(&self, e: &IdedExpr, op: &str, a: Ty<'a>, b: Ty<'a>) -> Result<Ty<'a>, String> {
        use cel::common::ast::operators as ops;
        if a.is_dyn() || b.is_dyn() {
            return Ok(Ty::Dyn);
        }
        let sym = op.trim_matches('_');
        match (&a, &b) {
            (Ty::Int, Ty::Int) | (Ty::UInt, Ty::UInt) => Ok(a),
            (Ty::Double, Ty::Double) if op != ops::MODULO => Ok(a),
            (x, y) if x.is_numeric() && y.is_numeric() => Err(format!(
                "`{}` mixes {} and {} with `{sym}`: CEL does not convert between them; \
                 write a decimal literal such as `2.0`, or use double()/int()",
                self.text(e),
                x.name(),
                y.name()
            )),
            (x, y) if op == ops::ADD && x.is_stringy() && y.is_stringy() => Ok(Ty::Str),
            (Ty::List(x), Ty::List(y)) if op == ops::ADD => {
                Ok(Ty::List(Box::new(unify((**x).clone(), (**y).clone()))))
            }
            _ => Err(format!(
                "`{}`: cannot apply `{sym}` to {} and {}",
                self.text(e),
                a.name(),
                b.name()
            )),
        }
    }
}

fn literal_ty<'a>(l: &LiteralValue) -> Ty<'a> {
    match l {
        LiteralValue::Boolean(_) => Ty::Bool,
        LiteralValue::Int(_) => Ty::Int,
        LiteralValue::UInt(_) => Ty::UInt,
        LiteralValue::Double(_) => Ty::Double,
        LiteralValue::String(_) | LiteralValue::Bytes(_) => Ty::Str,
        LiteralValue::Null => Ty::Null,
    }
}

/// Whether values of the two types may meet in `==`, `in` or a ternary.
fn compatible(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Dyn, _) | (_, Ty::Dyn) => true,
        (Ty::List(x), Ty::List(y)) => compatible(x, y),
        _ => {
            (a.is_numeric() && b.is_numeric())
                || (a.is_stringy() && b.is_stringy())
                || std::mem::discriminant(a) == std::mem::discriminant(b)
        }
    }
}

/// The common type of two values in one list or both branches of a ternary.
fn unify<'a>(a: Ty<'a>, b: Ty<'a>) -> Ty<'a> {
    if a == b {
        a
    } else if a.is_stringy() && b.is_stringy() {
        Ty::Str
    } else if matches!(a, Ty::Null) {
        b
    } else if matches!(b, Ty::Null) {
        a
    } else {
        Ty::Dyn
    }
}

/// The smallest and largest offsets recorded in a subtree.
fn subtree_offsets(
    e: &IdedExpr,
    info: &cel::common::ast::SourceInfo,
    range: &mut Option<(usize, usize)>,
) {
    if let Some((a, b)) = info.offset_for(e.id) {
        let (a, b) = (a as usize, b as usize);
        *range = Some(match *range {
            None => (a, b),
            Some((x, y)) => (x.min(a), y.max(b)),
        });
    }
    match &e.expr {
        Ast::Call(c) => {
            if let Some(t) = &c.target {
                subtree_offsets(t, info, range);
            }
            for a in &c.args {
                subtree_offsets(a, info, range);
            }
        }
        Ast::Select(s) => subtree_offsets(&s.operand, info, range),
        Ast::List(l) => {
            for x in &l.elements {
                subtree_offsets(x, info, range);
            }
        }
        _ => {}
    }
}

fn describe(e: &Ast) -> String {
    match e {
        Ast::Ident(n) => n.clone(),
        Ast::Select(s) => format!("{}.{}", describe(&s.operand.expr), s.field),
        Ast::Call(c) => format!("{}(...)", c.func_name.trim_matches('_')),
        _ => "expression".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Sp;
    use serde_json::json;

    fn f(id: &str, ty: FieldType, values: &[&str]) -> FieldDef {
        FieldDef {
            id: Sp::new(id.into()),
            label: None,
            ty: Sp::new(ty),
            values: values.iter().map(|v| Sp::new(v.to_string())).collect(),
            required: false,
        }
    }

    fn fields() -> Vec<FieldDef> {
        vec![
            f("tier", FieldType::Enum, &["重中之重", "省级重大", "一般"]),
            f("investment", FieldType::Number, &[]),
            f("floors", FieldType::Int, &[]),
            f("government", FieldType::Bool, &[]),
            f("industry", FieldType::String, &[]),
            f("filed_on", FieldType::Date, &[]),
            f("officer", FieldType::User, &[]),
            f("tags", FieldType::List, &[]),
        ]
    }

    fn ok(src: &str) {
        if let Err(e) = check(src, &fields(), ExprType::Bool) {
            panic!("{src}: {e}");
        }
    }

    fn bad(src: &str, needle: &str) {
        match check(src, &fields(), ExprType::Bool) {
            Ok(t) => panic!("{src} passed as {t}"),
            Err(e) => assert!(e.contains(needle), "{src}: {e}"),
        }
    }

    #[test]
    fn optional_fields_read_without_has_are_found() {
        let mut fs = fields();
        if let Some(t) = fs.iter_mut().find(|f| f.id.value == "tier") {
            t.required = true;
        }
        let reads = |src: &str| unguarded_optional_reads(src, &fs);
        assert_eq!(reads("project.officer"), vec!["officer".to_string()]);
        assert_eq!(
            reads(r#"project.investment >= 500000.0 ? "role:a" : project.officer"#),
            vec!["investment".to_string(), "officer".to_string()]
        );
        assert!(reads(r#"has(project.officer) ? project.officer : "role:clerk""#).is_empty());
        // A required field needs no test.
        assert!(reads(r#"project.tier == "一般" ? "role:a" : "role:b""#).is_empty());
    }

    #[test]
    fn accepts_usual_conditions() {
        ok(r#"project.tier in ["重中之重", "省级重大"]"#);
        ok("project.investment >= 50000 && !project.government");
        ok("project.investment * 0.5 > 100.0");
        ok("project.floors + 1 > 3 || project.floors == 2.0");
        ok(r#"project.industry.startsWith("制造") && project.industry.contains("业")"#);
        ok(r#"size(project.tags) > 0 && "重点" in project.tags"#);
        ok(r#"project.tags.exists(t, t == "重点")"#);
        ok(r#"project.tags.all(t, size(t) > 1)"#);
        ok(r#"has(project.officer) && project.officer != """#);
        ok(r#"project.filed_on < "2026-01-01""#);
        ok(r#"(project.government ? 1 : 2) == 1"#);
        ok("project.tier == project.tier");
        ok("project.tags.filter(t, t.startsWith(\"a\")).size() > 0");
    }

    #[test]
    fn rejects_mistakes() {
        bad("project.foo == 1", "unknown field `project.foo`");
        bad(
            r#"project.investment == "big""#,
            "compares number with string",
        );
        bad("project.tier > 3", "no order");
        bad(
            r#"project.tier == "重重""#,
            "not a value of enum field `tier`",
        );
        bad(
            r#"project.tier in ["重中之重", "重重"]"#,
            "\"重重\" is not a value",
        );
        bad(
            "project.floors in [\"a\"]",
            "looks for int in a list of string",
        );
        bad(
            "project.investment + 1.0",
            "condition must be true or false",
        );
        bad(
            r#"size(project.tags) == "a""#,
            "`size(project.tags) == \"a\"` compares int with string",
        );
        bad("project.investment * 2 > 1.0", "mixes number and int");
        bad("frobnicate(project.tier)", "unknown function `frobnicate`");
        bad("tier == 1", "unknown name `tier`");
        bad("project.government && 1", "is int, not true or false");
        bad(r#"project.filed_on < "next week""#, "not a date");
        bad("project.tier ==", "does not parse");
    }

    #[test]
    fn rule_must_be_string() {
        let fs = fields();
        assert_eq!(
            check(
                r#"project.government ? "dept:fgw" : project.officer"#,
                &fs,
                ExprType::String
            ),
            Ok(ExprType::String)
        );
        assert!(check("project.floors", &fs, ExprType::String).is_err());
    }

    #[test]
    fn evaluates() {
        let p = json!({"tier": "省级重大", "investment": 60000, "government": false,
                       "tags": ["重点"], "officer": "li"});
        let e = Expr::parse(r#"project.tier in ["重中之重", "省级重大"]"#).expect("parses");
        assert_eq!(e.eval_bool(&p), Ok(true));
        let e = Expr::parse("project.investment >= 50000.0 && !project.government").expect("p");
        assert_eq!(e.eval_bool(&p), Ok(true));
        let e = Expr::parse_with_fields("project.investment * 0.5 > 100.0", &fields()).expect("p");
        assert_eq!(e.eval_bool(&p), Ok(true));
        let e = Expr::parse(r#"project.government ? "dept:fgw" : project.officer"#).expect("p");
        assert_eq!(e.eval_string(&p), Ok("li".to_string()));
        assert!(e.eval_bool(&p).is_err());
        let e = Expr::parse(r#""重点" in project.tags"#).expect("p");
        assert_eq!(e.eval_bool(&p), Ok(true));
        assert_eq!(e.source(), r#""重点" in project.tags"#);
        assert!(
            Expr::parse("project.missing == 1")
                .expect("p")
                .eval_bool(&p)
                .is_err()
        );
        assert!(Expr::parse("1 +").is_err());
    }

    #[test]
    fn expr_is_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone + fmt::Debug>() {}
        assert_send_sync::<Expr>();
    }
}
