//! The shared CEL environment and the variables each kind of expression may use.

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, extensions};

/// Built once per process: `Env::stdlib()` costs ~19 µs, so evaluation contexts share this one.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(extensions::strings)
        .expect("the strings extension declares no duplicate overloads");
    Arc::new(env)
});

/// The environment every expression is compiled and evaluated with: the CEL standard library
/// plus the strings extension (`lowerAscii`, `split`, `replace`, `trim`, ...).
pub(crate) fn env() -> &'static Arc<Env> {
    &ENV
}

/// Whether the environment declares a function (global or member) called `name`, e.g. `size`,
/// `startsWith`, `optional.of`. Operators (`_==_`, `@in`) are not looked up here.
pub(crate) fn is_declared_function(name: &str) -> bool {
    // `Context::add_function` is documented to refuse exactly the names the `Env` declares as
    // overloads: the one public way to ask the `Env` by name. The context is thrown away.
    Context::with_env(Arc::clone(env()))
        .add_function(name, |x: i64| x)
        .is_err()
}

/// A variable an expression may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Root {
    /// `event`: the JSON document (webhook payload or outbound envelope).
    Event,
    /// `headers`: lower-case header name → value.
    Headers,
}

impl Root {
    /// The variable's name in expressions.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Root::Event => "event",
            Root::Headers => "headers",
        }
    }
}

/// Which variables an expression may use, depending on where it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Event-rule conditions and throttle keys: `event` (the webhook payload) and `headers`.
    Rule,
    /// Outbound endpoint filters: `event`, the delivery envelope
    /// `{"event", "delivery_id", "organization_id", "resource_type", "resource_id", "payload",
    /// "occurred_at"}`.
    Outbound,
}

impl Scope {
    /// The variables declared in this scope.
    pub(crate) fn roots(self) -> &'static [Root] {
        match self {
            Scope::Rule => &[Root::Event, Root::Headers],
            Scope::Outbound => &[Root::Event],
        }
    }

    /// The declared variable called `name`, if any.
    pub(crate) fn root(self, name: &str) -> Option<Root> {
        self.roots().iter().copied().find(|r| r.name() == name)
    }

    /// The declared variables' names, for error messages.
    pub(crate) fn declared(self) -> String {
        self.roots()
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
