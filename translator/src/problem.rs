//! Problems: what Portico reports about its input, with where it came from.

use std::fmt;

use crate::input::ObjectKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// The text is not YAML, or a file could not be read.
    Parse,
    /// A known kind that does not deserialize, or a value the spec forbids.
    Invalid,
    /// Valid, but the controller does not accept it (status says why).
    NotAccepted,
    /// A feature Portico does not implement, or an unknown kind.
    Unsupported,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    pub severity: Severity,
    pub kind: ProblemKind,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub object: Option<ObjectKey>,
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(severity: Severity, kind: ProblemKind, message: impl Into<String>) -> Self {
        Problem {
            severity,
            kind,
            file: None,
            line: None,
            object: None,
            field: String::new(),
            message: message.into(),
        }
    }

    pub fn at(mut self, file: &str, line: Option<usize>) -> Self {
        self.file = Some(file.to_string());
        self.line = line;
        self
    }

    pub fn object(mut self, key: ObjectKey) -> Self {
        self.object = Some(key);
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

impl fmt::Display for Problem {
    /// `FILE:LINE: KIND NAMESPACE/NAME: FIELD: MESSAGE`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            match self.line {
                Some(line) => write!(f, "{file}:{line}: ")?,
                None => write!(f, "{file}: ")?,
            }
        }
        if let Some(key) = &self.object {
            write!(f, "{key}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}
