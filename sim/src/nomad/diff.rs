//! `POST /v1/job/:id/plan` (B7): the structural job diff and the scheduler annotations.
//!
//! The diff is computed generically over the canonical JSON (Nomad's `diff.go` has a hand-written
//! diff per struct): primitive fields become `FieldDiff`s, string maps are flattened to
//! `Name[key]` fields, nested objects and list elements become `ObjectDiff`s, task groups and
//! tasks are matched by name. Types and names follow Nomad; the exact set of contextual fields
//! does not.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::Nomad;
use super::error::ApiError;
use super::http::{Query, caller, write_response};
use super::jobs::check_valid;
use super::model::{JobModel, spec_text};
use super::routes_jobs::plan_request;
use super::state::Key;

/// Job-level fields the diff ignores (B7).
const JOB_FILTERED: [&str; 13] = [
    "ID",
    "Status",
    "StatusDescription",
    "Version",
    "Stable",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "Update",
    "SubmitTime",
    "NomadTokenID",
    "VaultToken",
    "TaskGroups",
];

fn prim(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field(name: &str, old: &str, new: &str) -> Value {
    let typ = if old.is_empty() {
        "Added"
    } else if new.is_empty() {
        "Deleted"
    } else {
        "Edited"
    };
    json!({"Type": typ, "Name": name, "Old": old, "New": new, "Annotations": null})
}

fn is_str_map(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.values().all(|x| x.is_string()))
}

/// Field and object diffs between two objects, keys sorted, skipping `skip`.
fn diff_obj(old: &Map<String, Value>, new: &Map<String, Value>, skip: &[&str]) -> (Vec<Value>, Vec<Value>) {
    let null = Value::Null;
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut fields = Vec::new();
    let mut objects = Vec::new();
    for k in keys {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let (o, n) = (old.get(k).unwrap_or(&null), new.get(k).unwrap_or(&null));
        if o == n {
            continue;
        }
        if let (Some(os), Some(ns)) = (prim(o), prim(n)) {
            fields.push(field(k, &os, &ns));
        } else if (is_str_map(o) || o.is_null()) && (is_str_map(n) || n.is_null()) {
            let empty = Map::new();
            let (om, nm) = (o.as_object().unwrap_or(&empty), n.as_object().unwrap_or(&empty));
            let mut mk: Vec<&String> = om.keys().chain(nm.keys()).collect();
            mk.sort();
            mk.dedup();
            for m in mk {
                let os = om.get(m).and_then(Value::as_str).unwrap_or("");
                let ns = nm.get(m).and_then(Value::as_str).unwrap_or("");
                if os != ns {
                    fields.push(field(&format!("{k}[{m}]"), os, ns));
                }
            }
        } else if o.is_array() || n.is_array() {
            let empty = Vec::new();
            let (oa, na) = (o.as_array().unwrap_or(&empty), n.as_array().unwrap_or(&empty));
            if oa.iter().chain(na).all(|x| prim(x).is_some()) {
                let mut fs = Vec::new();
                for x in oa.iter().filter(|x| !na.contains(x)) {
                    fs.push(field(k, &prim(x).unwrap_or_default(), ""));
                }
                for x in na.iter().filter(|x| !oa.contains(x)) {
                    fs.push(field(k, "", &prim(x).unwrap_or_default()));
                }
                if !fs.is_empty() {
                    objects.push(json!({"Type": "Edited", "Name": k, "Fields": fs, "Objects": null}));
                }
            } else {
                for i in 0..oa.len().max(na.len()) {
                    if let Some(d) = object_diff(k, oa.get(i), na.get(i)) {
                        objects.push(d);
                    }
                }
            }
        } else if let Some(d) = object_diff(k, Some(o).filter(|x| !x.is_null()), Some(n).filter(|x| !x.is_null())) {
            objects.push(d);
        }
    }
    (fields, objects)
}

fn object_diff(name: &str, old: Option<&Value>, new: Option<&Value>) -> Option<Value> {
    let empty = Map::new();
    let o = old.and_then(Value::as_object);
    let n = new.and_then(Value::as_object);
    let typ = match (o, n) {
        (None, None) => return None,
        (None, Some(_)) => "Added",
        (Some(_), None) => "Deleted",
        (Some(_), Some(_)) => "Edited",
    };
    let (fields, objects) = diff_obj(o.unwrap_or(&empty), n.unwrap_or(&empty), &[]);
    if fields.is_empty() && objects.is_empty() {
        return None;
    }
    Some(json!({"Type": typ, "Name": name, "Fields": nullable(fields), "Objects": nullable(objects)}))
}

fn nullable(v: Vec<Value>) -> Value {
    if v.is_empty() { Value::Null } else { Value::Array(v) }
}

fn named<'a>(v: Option<&'a Value>, key: &str) -> BTreeMap<String, &'a Map<String, Value>> {
    v.and_then(|x| x.get(key))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_object())
        .map(|m| (m.get("Name").and_then(Value::as_str).unwrap_or("").to_string(), m))
        .collect()
}

fn typ_of(old: bool, new: bool, changed: bool) -> &'static str {
    match (old, new) {
        (false, true) => "Added",
        (true, false) => "Deleted",
        _ if changed => "Edited",
        _ => "None",
    }
}

/// The `JobDiff` of `new` against `old` (both full jobs); `Updates` left null.
pub fn job_diff(old: Option<&Value>, new: &Value) -> Value {
    let empty = Map::new();
    let om = old.and_then(Value::as_object).unwrap_or(&empty);
    let nm = new.as_object().unwrap_or(&empty);
    let (fields, objects) = diff_obj(om, nm, &JOB_FILTERED);
    let og = named(old, "TaskGroups");
    let ng = named(Some(new), "TaskGroups");
    let mut names: Vec<&String> = og.keys().chain(ng.keys()).collect();
    names.sort();
    names.dedup();
    let mut groups = Vec::new();
    let mut any_group = false;
    for name in names {
        let (o, n) = (og.get(name).copied(), ng.get(name).copied());
        let (gf, gobj) = diff_obj(o.unwrap_or(&empty), n.unwrap_or(&empty), &["Tasks", "Name"]);
        let ov = o.map(|m| Value::Object(m.clone()));
        let nv = n.map(|m| Value::Object(m.clone()));
        let ot = named(ov.as_ref(), "Tasks");
        let nt = named(nv.as_ref(), "Tasks");
        let mut tnames: Vec<&String> = ot.keys().chain(nt.keys()).collect();
        tnames.sort();
        tnames.dedup();
        let mut tasks = Vec::new();
        let mut any_task = false;
        for t in tnames {
            let (to, tn) = (ot.get(t).copied(), nt.get(t).copied());
            let (tf, tobj) = diff_obj(to.unwrap_or(&empty), tn.unwrap_or(&empty), &["Name"]);
            let changed = !tf.is_empty() || !tobj.is_empty();
            let typ = typ_of(to.is_some(), tn.is_some(), changed);
            any_task |= typ != "None";
            let ann = match typ {
                "Added" => json!(["forces create"]),
                "Deleted" => json!(["forces destroy"]),
                "Edited" => json!(["forces create/destroy update"]),
                _ => Value::Null,
            };
            tasks.push(
                json!({"Type": typ, "Name": t, "Fields": nullable(tf), "Objects": nullable(tobj), "Annotations": ann}),
            );
        }
        let typ = typ_of(o.is_some(), n.is_some(), !gf.is_empty() || !gobj.is_empty() || any_task);
        any_group |= typ != "None";
        groups.push(json!({"Type": typ, "Name": name, "Fields": nullable(gf), "Objects": nullable(gobj),
            "Tasks": nullable(tasks), "Updates": null}));
    }
    let typ = if old.is_none() {
        "Added"
    } else if fields.is_empty() && objects.is_empty() && !any_group {
        "None"
    } else {
        "Edited"
    };
    json!({"Type": typ, "ID": nm.get("ID").cloned().unwrap_or(Value::Null), "Fields": nullable(fields),
        "Objects": nullable(objects), "TaskGroups": nullable(groups)})
}

/// The plan route: mutators and validation as for register, nothing written.
pub fn plan_route(
    n: &Arc<Nomad>,
    q: &Query,
    headers: &HeaderMap,
    key: &Key,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let (mut job, want_diff) = plan_request(q, body, &key.1)?;
    check_valid(&job)?;
    let who = caller(n, headers)?;
    let ns = job.get("Namespace").and_then(Value::as_str).unwrap_or("default").to_string();
    if !who.allows_any(&ns, &["submit-job", "plan-job"]) {
        return Err(ApiError::permission_denied());
    }
    let key: Key = (ns, key.1.clone());
    let st = n.lock();
    let existing = st.t.jobs.get(&key);
    let new_model = JobModel::from_job(&job);
    let spec = spec_text(&mut job);
    let spec_changed = existing.is_none_or(|e| e.cur.spec != spec);
    let mut tg_updates = Map::new();
    let mut updates_by_group: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for g in &new_model.groups {
        let live: Vec<_> = st.t.job_allocs(&key).filter(|a| a.group == g.name && a.live()).collect();
        let live_n = live.len() as u64;
        let old_group = existing.and_then(|e| e.cur.model.group(&g.name));
        let destructive = old_group.is_none_or(|og| og.destructive_hash != g.destructive_hash);
        let kept = live_n.min(g.count);
        let (mut ignore, mut inplace, mut destroy_update, mut canary) = (0, 0, 0, 0);
        if !spec_changed {
            ignore = kept;
        } else if destructive {
            destroy_update = kept;
            if kept > 0 {
                canary = g.update.as_ref().filter(|u| u.max_parallel > 0).map(|u| u.canary).unwrap_or(0);
            }
        } else {
            inplace = kept;
        }
        let place = g.count.saturating_sub(live_n);
        let stop = live_n.saturating_sub(g.count);
        tg_updates.insert(
            g.name.clone(),
            json!({"Ignore": ignore, "Place": place, "Migrate": 0, "Stop": stop,
            "InPlaceUpdate": inplace, "DestructiveUpdate": destroy_update, "Canary": canary, "Preemptions": 0,
            "Disconnect": 0, "Reconnect": 0, "RescheduleNow": 0, "RescheduleLater": 0}),
        );
        let mut u = Map::new();
        for (k, v) in [
            ("ignore", ignore),
            ("create", place),
            ("destroy", stop),
            ("in-place update", inplace),
            ("create/destroy update", destroy_update),
            ("canary", canary),
        ] {
            if v > 0 {
                u.insert(k.into(), json!(v));
            }
        }
        updates_by_group.insert(g.name.clone(), u);
    }
    if let Some(e) = existing {
        for g in e.cur.model.groups.iter().filter(|g| new_model.group(&g.name).is_none()) {
            let live = st.t.job_allocs(&key).filter(|a| a.group == g.name && a.live()).count();
            tg_updates.insert(
                g.name.clone(),
                json!({"Ignore": 0, "Place": 0, "Migrate": 0, "Stop": live,
                "InPlaceUpdate": 0, "DestructiveUpdate": 0, "Canary": 0, "Preemptions": 0, "Disconnect": 0,
                "Reconnect": 0, "RescheduleNow": 0, "RescheduleLater": 0}),
            );
        }
    }
    let diff = if want_diff {
        let old = existing.map(|e| e.cur.render());
        let mut d = job_diff(old.as_ref(), &Value::Object(job.clone()));
        if let Some(Value::Array(groups)) = d.get_mut("TaskGroups") {
            for g in groups.iter_mut() {
                let name = g.get("Name").and_then(Value::as_str).unwrap_or("").to_string();
                if let (Some(u), Value::Object(gm)) = (updates_by_group.get(&name), &mut *g) {
                    gm.insert("Updates".into(), if u.is_empty() { Value::Null } else { Value::Object(u.clone()) });
                }
            }
        }
        d
    } else {
        Value::Null
    };
    let jmi = existing.map(|e| e.cur.job_modify_index).unwrap_or(0);
    drop(st);
    let body = json!({"Annotations": {"DesiredTGUpdates": tg_updates, "PreemptedAllocs": null},
        "FailedTGAllocs": null, "JobModifyIndex": jmi, "CreatedEvals": null, "Diff": diff,
        "NextPeriodicLaunch": "0001-01-01T00:00:00Z", "Warnings": "", "Index": jmi});
    Ok(write_response(q, &body, jmi))
}
