//! A family declaration read from a Lua table (`zone:counter(...)` and friends), every
//! refusal naming the family and the field. Read by hand rather than through mlua's
//! serde support: serde's messages name neither the family nor the option.

use super::err;
use crate::metrics::family::QuantileMode;
use crate::metrics::{FamilySpec, HistogramSpec, MetricType};
use mlua::{Result as LuaResult, Table, Value};

pub(super) fn number_list(v: Value, what: &str) -> LuaResult<Vec<f64>> {
    let Value::Table(t) = v else {
        return Err(err(format!("{what} must be an array of numbers")));
    };
    t.sequence_values::<Value>()
        .map(|v| match v? {
            Value::Number(n) => Ok(n),
            Value::Integer(n) => Ok(n as f64),
            other => Err(err(format!(
                "{what} must be numbers, got {}",
                other.type_name()
            ))),
        })
        .collect()
}

/// Reads a family declaration from a Lua table; raises naming the bad field. The
/// fields are read in this order, so a declaration with several bad fields is refused
/// for the first of them.
pub(super) fn spec_from(t: &Table) -> LuaResult<FamilySpec> {
    let name: String = match t.get::<Value>("name")? {
        Value::String(s) => s.to_str()?.to_string(),
        _ => return Err(err("metric name must be a string")),
    };
    let d = Declaration { t, name: &name };
    let help = d.help()?;
    let metric_type = d.metric_type()?;
    let label_names = d.label_names()?;
    let histogram = match metric_type {
        MetricType::Histogram => Some(d.histogram()?),
        _ => None,
    };
    let max_series = d.max_series()?;
    let expire_s = d.expire_s()?;
    let overflow_value = d.overflow_value()?;
    let unit = d.string("unit")?;
    let group = d.string("group")?;
    let quantiles = d.quantiles()?;
    let exemplars = d.boolean("exemplars")?;
    let native_only = d.boolean("native_only")?;
    let spec = FamilySpec {
        name,
        help,
        metric_type,
        label_names,
        histogram,
        max_series,
        expire_s,
        overflow_value,
        unit,
        group,
        quantiles,
        exemplars,
        native_only,
    };
    spec.validate().map_err(|e| err(e.to_string()))?;
    if crate::metrics::builtin::find(&spec.name).is_some() {
        return Err(err(format!(
            "metric \"{}\": the name is reserved for the module's own metrics",
            spec.name
        )));
    }
    Ok(spec)
}

/// The declaration table of family `name`: one reader per field, each refusal naming
/// the family.
struct Declaration<'a> {
    t: &'a Table,
    name: &'a str,
}

impl Declaration<'_> {
    fn refuse(&self, what: impl std::fmt::Display) -> mlua::Error {
        err(format!("metric \"{}\": {what}", self.name))
    }

    /// A number field, absent: `None`.
    fn number(&self, key: &str) -> LuaResult<Option<f64>> {
        match self.t.get::<Value>(key)? {
            Value::Nil => Ok(None),
            Value::Number(n) => Ok(Some(n)),
            Value::Integer(n) => Ok(Some(n as f64)),
            other => Err(self.refuse(format_args!(
                "\"{key}\" must be a number, got {}",
                other.type_name()
            ))),
        }
    }

    /// A string field, absent: empty.
    fn string(&self, key: &str) -> LuaResult<String> {
        match self.t.get::<Value>(key)? {
            Value::Nil => Ok(String::new()),
            Value::String(s) => Ok(s.to_str()?.to_string()),
            other => Err(self.refuse(format_args!(
                "\"{key}\" must be a string, got {}",
                other.type_name()
            ))),
        }
    }

    /// A boolean field, absent: false.
    fn boolean(&self, key: &str) -> LuaResult<bool> {
        match self.t.get::<Value>(key)? {
            Value::Nil => Ok(false),
            Value::Boolean(b) => Ok(b),
            other => Err(self.refuse(format_args!(
                "\"{key}\" must be a boolean, got {}",
                other.type_name()
            ))),
        }
    }

    fn help(&self) -> LuaResult<String> {
        match self.t.get::<Value>("help")? {
            Value::Nil => Ok(String::new()),
            Value::String(s) => Ok(s.to_str()?.to_string()),
            _ => Err(self.refuse("help must be a string")),
        }
    }

    fn metric_type(&self) -> LuaResult<MetricType> {
        let type_name: String = self.t.get::<Option<String>>("type")?.unwrap_or_default();
        MetricType::parse(&type_name).ok_or_else(|| {
            self.refuse(format_args!(
                "unknown type \"{type_name}\" (counter, gauge or histogram)"
            ))
        })
    }

    fn label_names(&self) -> LuaResult<Vec<String>> {
        match self.t.get::<Value>("labels")? {
            Value::Nil => Ok(Vec::new()),
            Value::Table(l) => l
                .sequence_values::<Value>()
                .map(|v| match v? {
                    Value::String(s) => Ok(s.to_str()?.to_string()),
                    other => Err(self.refuse(format_args!(
                        "label names must be strings, got {}",
                        other.type_name()
                    ))),
                })
                .collect(),
            _ => Err(self.refuse("labels must be an array of strings")),
        }
    }

    /// Buckets, then precision, lowest and highest; each absent one is the default's.
    /// A precision out of 1..=5 becomes 0, which the family's validation refuses.
    fn histogram(&self) -> LuaResult<HistogramSpec> {
        let d = HistogramSpec::default();
        let buckets = match self.t.get::<Value>("buckets")? {
            Value::Nil => d.buckets.clone(),
            v => number_list(v, &format!("metric \"{}\": buckets", self.name))?,
        };
        let precision = self.number("precision")?.unwrap_or(f64::from(d.precision));
        Ok(HistogramSpec {
            lowest: self.number("lowest")?.unwrap_or(d.lowest),
            highest: self
                .number("highest")?
                .unwrap_or_else(|| HistogramSpec::highest_for(&buckets)),
            precision: if (1.0..=5.0).contains(&precision) && precision.fract() == 0.0 {
                precision as u8
            } else {
                0
            },
            buckets,
        })
    }

    fn max_series(&self) -> LuaResult<u64> {
        let max_series = self.number("max_series")?.unwrap_or(0.0);
        if max_series < 0.0 || max_series.fract() != 0.0 {
            return Err(self.refuse("max_series must be a whole number >= 0"));
        }
        Ok(max_series as u64)
    }

    fn expire_s(&self) -> LuaResult<u64> {
        let expire = self.number("expire")?.unwrap_or(0.0);
        if !(0.0..=4.0e9).contains(&expire) || expire.fract() != 0.0 {
            return Err(self.refuse(format_args!(
                "expire must be a whole number of seconds >= 0 (0: never), got {expire}"
            )));
        }
        Ok(expire as u64)
    }

    fn overflow_value(&self) -> LuaResult<String> {
        let value = self.string("overflow")?;
        if value.len() > crate::metrics::family::MAX_LABEL_VALUE {
            return Err(self.refuse("overflow must be at most 4096 bytes"));
        }
        Ok(value)
    }

    fn quantiles(&self) -> LuaResult<QuantileMode> {
        match self.t.get::<Value>("quantiles")? {
            Value::Nil | Value::Boolean(false) => Ok(QuantileMode::Off),
            Value::String(s) => match QuantileMode::parse(&s.to_str()?) {
                Some(QuantileMode::Off) | None => Err(self.refuse(format_args!(
                    "quantiles must be \"beside\" or \"instead\", got \"{}\"",
                    s.to_string_lossy()
                ))),
                Some(m) => Ok(m),
            },
            other => Err(self.refuse(format_args!(
                "quantiles must be \"beside\" or \"instead\", got {}",
                other.type_name()
            ))),
        }
    }
}
