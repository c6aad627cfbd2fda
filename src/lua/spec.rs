//! A family declaration read from a Lua table (`zone:counter(...)` and friends), every
//! refusal naming the family and the field. Read by hand rather than through mlua's
//! serde support: serde's messages name neither the family nor the option.

use super::err;
use crate::metrics::family::QuantileMode;
use crate::metrics::{FamilySpec, HistogramSpec, MetricType};
use mlua::{Result as LuaResult, Table, Value};

fn opt_f64(t: &Table, key: &str, family: &str) -> LuaResult<Option<f64>> {
    match t.get::<Value>(key)? {
        Value::Nil => Ok(None),
        Value::Number(n) => Ok(Some(n)),
        Value::Integer(n) => Ok(Some(n as f64)),
        other => Err(err(format!(
            "metric \"{family}\": \"{key}\" must be a number, got {}",
            other.type_name()
        ))),
    }
}

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

/// Reads a family declaration from a Lua table; raises naming the bad field.
pub(super) fn spec_from(t: &Table) -> LuaResult<FamilySpec> {
    let name: String = match t.get::<Value>("name")? {
        Value::String(s) => s.to_str()?.to_string(),
        _ => return Err(err("metric name must be a string")),
    };
    let help: String = match t.get::<Value>("help")? {
        Value::Nil => String::new(),
        Value::String(s) => s.to_str()?.to_string(),
        _ => return Err(err(format!("metric \"{name}\": help must be a string"))),
    };
    let type_name: String = t.get::<Option<String>>("type")?.unwrap_or_default();
    let metric_type = MetricType::parse(&type_name).ok_or_else(|| {
        err(format!(
            "metric \"{name}\": unknown type \"{type_name}\" (counter, gauge or histogram)"
        ))
    })?;
    let label_names = match t.get::<Value>("labels")? {
        Value::Nil => Vec::new(),
        Value::Table(l) => l
            .sequence_values::<Value>()
            .map(|v| match v? {
                Value::String(s) => Ok(s.to_str()?.to_string()),
                other => Err(err(format!(
                    "metric \"{name}\": label names must be strings, got {}",
                    other.type_name()
                ))),
            })
            .collect::<LuaResult<Vec<_>>>()?,
        _ => {
            return Err(err(format!(
                "metric \"{name}\": labels must be an array of strings"
            )))
        }
    };
    let histogram = if metric_type == MetricType::Histogram {
        let d = HistogramSpec::default();
        let buckets = match t.get::<Value>("buckets")? {
            Value::Nil => d.buckets.clone(),
            v => number_list(v, &format!("metric \"{name}\": buckets"))?,
        };
        let precision = opt_f64(t, "precision", &name)?.unwrap_or(f64::from(d.precision));
        Some(HistogramSpec {
            lowest: opt_f64(t, "lowest", &name)?.unwrap_or(d.lowest),
            highest: opt_f64(t, "highest", &name)?
                .unwrap_or_else(|| HistogramSpec::highest_for(&buckets)),
            precision: if (1.0..=5.0).contains(&precision) && precision.fract() == 0.0 {
                precision as u8
            } else {
                0
            },
            buckets,
        })
    } else {
        None
    };
    let max_series = opt_f64(t, "max_series", &name)?.unwrap_or(0.0);
    if max_series < 0.0 || max_series.fract() != 0.0 {
        return Err(err(format!(
            "metric \"{name}\": max_series must be a whole number >= 0"
        )));
    }
    let expire = opt_f64(t, "expire", &name)?.unwrap_or(0.0);
    if !(0.0..=4.0e9).contains(&expire) || expire.fract() != 0.0 {
        return Err(err(format!(
            "metric \"{name}\": expire must be a whole number of seconds >= 0 (0: never), got {expire}"
        )));
    }
    let expire_s = expire as u64;
    let opt_string = |key: &str| -> LuaResult<String> {
        match t.get::<Value>(key)? {
            Value::Nil => Ok(String::new()),
            Value::String(s) => Ok(s.to_str()?.to_string()),
            other => Err(err(format!(
                "metric \"{name}\": \"{key}\" must be a string, got {}",
                other.type_name()
            ))),
        }
    };
    let overflow_value = opt_string("overflow")?;
    if overflow_value.len() > crate::metrics::family::MAX_LABEL_VALUE {
        return Err(err(format!(
            "metric \"{name}\": overflow must be at most 4096 bytes"
        )));
    }
    let unit = opt_string("unit")?;
    let group = opt_string("group")?;
    let quantiles = match t.get::<Value>("quantiles")? {
        Value::Nil | Value::Boolean(false) => QuantileMode::Off,
        Value::String(s) => match QuantileMode::parse(&s.to_str()?) {
            Some(QuantileMode::Off) | None => {
                return Err(err(format!(
                    "metric \"{name}\": quantiles must be \"beside\" or \"instead\", got \"{}\"",
                    s.to_string_lossy()
                )))
            }
            Some(m) => m,
        },
        other => {
            return Err(err(format!(
                "metric \"{name}\": quantiles must be \"beside\" or \"instead\", got {}",
                other.type_name()
            )))
        }
    };
    let spec = FamilySpec {
        name,
        help,
        metric_type,
        label_names,
        histogram,
        max_series: max_series as u64,
        expire_s,
        overflow_value,
        unit,
        group,
        quantiles,
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
