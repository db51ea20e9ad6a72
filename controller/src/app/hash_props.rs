//! Property tests of the spec hash: it ignores key order and the defaults Nomad fills in, and
//! it changes when a field that matters changes.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::hash::spec_hash;
use super::render::render;
use super::strategy::Strategy as RolloutStrategy;
use super::test_util::{job_app, template_app};
use super::{App, HumanDuration};

/// Rebuilds every object with its keys in an order derived from `seed`.
fn shuffle(value: &Value, seed: u64) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                let mut h = DefaultHasher::new();
                (seed, k.as_str()).hash(&mut h);
                h.finish()
            });
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), shuffle(&map[k.as_str()], seed));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| shuffle(i, seed)).collect()),
        other => other.clone(),
    }
}

fn put_if_absent(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut()
        && !map.contains_key(key)
    {
        map.insert(key.to_owned(), value);
    }
}

/// Adds explicit Nomad defaults (api-contract B11/B12) and empty values, one per set bit of
/// `mask`, wherever the job leaves the field out.
fn with_defaults(job: &Value, mask: u32) -> Value {
    let mut job = job.clone();
    let bit = |n: u32| mask & (1 << n) != 0;
    let top: [(&str, Value); 8] = [
        ("Priority", json!(50)),
        ("Type", json!("service")),
        ("Region", json!("global")),
        ("Datacenters", json!(["*"])),
        ("NodePool", json!("default")),
        ("AllAtOnce", json!(false)),
        ("Constraints", json!([])),
        ("Affinities", Value::Null),
    ];
    for (i, (k, v)) in top.into_iter().enumerate() {
        if bit(i as u32) {
            put_if_absent(&mut job, k, v);
        }
    }
    if let Some(groups) = job.get_mut("TaskGroups").and_then(Value::as_array_mut) {
        for group in groups {
            let group_defaults: [(&str, Value); 6] = [
                ("EphemeralDisk", json!({"SizeMB": 300, "Sticky": false})),
                ("Update", json!({"MaxParallel": 1, "HealthCheck": "checks", "Stagger": 30_000_000_000_i64})),
                ("RestartPolicy", json!({"Attempts": 2, "Mode": "fail", "Delay": 15_000_000_000_i64})),
                ("ReschedulePolicy", json!({"Unlimited": true, "DelayFunction": "exponential"})),
                ("Migrate", json!({"HealthCheck": "checks", "MaxParallel": 1})),
                ("Meta", json!({})),
            ];
            for (i, (k, v)) in group_defaults.into_iter().enumerate() {
                if bit(8 + i as u32) {
                    put_if_absent(group, k, v);
                }
            }
            if let Some(services) = group.get_mut("Services").and_then(Value::as_array_mut) {
                for service in services {
                    if bit(14) {
                        put_if_absent(service, "Provider", json!("consul"));
                    }
                    if bit(15) {
                        put_if_absent(service, "AddressMode", json!("auto"));
                    }
                    if bit(16) {
                        put_if_absent(service, "OnUpdate", json!("require_healthy"));
                    }
                }
            }
            if let Some(tasks) = group.get_mut("Tasks").and_then(Value::as_array_mut) {
                for task in tasks {
                    if bit(17) {
                        put_if_absent(task, "KillTimeout", json!(5_000_000_000_i64));
                    }
                    if bit(18) {
                        put_if_absent(task, "LogConfig", json!({"MaxFiles": 10, "MaxFileSizeMB": 10}));
                    }
                    if bit(19) {
                        put_if_absent(task, "Resources", json!({"CPU": 100, "MemoryMB": 300}));
                    }
                    if bit(20) {
                        put_if_absent(task, "Lifecycle", Value::Null);
                    }
                }
            }
        }
    }
    job
}

/// A template record with the given knobs, or the same app as a raw job.
fn arb_app() -> impl proptest::strategy::Strategy<Value = App> {
    (
        0i64..50,
        proptest::option::of(1i64..4000),
        "[a-z]{1,8}:[0-9]\\.[0-9]",
        proptest::collection::btree_map("[A-Z]{1,5}", "[a-z]{0,4}", 0..3),
        proptest::option::of(1i64..5),
        any::<bool>(),
    )
        .prop_map(|(count, cpu, image, env, max_parallel, raw)| {
            let mut app = template_app("web");
            if let Some(t) = app.spec.template.as_mut() {
                t.count = count;
                t.image = image;
                t.env = env;
                if let Some(r) = t.resources.as_mut() {
                    r.cpu = cpu;
                }
            }
            app.spec.strategy = max_parallel.map(|n| RolloutStrategy {
                max_parallel: Some(n),
                min_healthy_time: Some(HumanDuration::from_secs(5)),
                ..RolloutStrategy::default()
            });
            if raw {
                // The same job, given raw: the hash depends on the job, not on the form.
                let job = render(&app, "drover").expect("template renders");
                let mut raw_app = job_app("web", job);
                raw_app.spec.strategy = app.spec.strategy.clone();
                raw_app
            } else {
                app
            }
        })
}

proptest! {
    #[test]
    fn spec_hash_should_ignore_key_order_and_nomad_defaults(
        app in arb_app(),
        seed in any::<u64>(),
        mask in any::<u32>(),
    ) {
        let job = render(&app, "drover").expect("renders");
        let noisy = shuffle(&with_defaults(&job, mask), seed);
        prop_assert_eq!(spec_hash(&job), spec_hash(&noisy));
    }

    #[test]
    fn spec_hash_should_change_when_a_meaningful_field_changes(
        app in arb_app(),
        field in 0usize..5,
        mask in any::<u32>(),
    ) {
        let job = render(&app, "drover").expect("renders");
        let mut changed = job.clone();
        let group = &mut changed["TaskGroups"][0];
        match field {
            0 => {
                let count = group["Count"].as_i64().unwrap_or(0);
                group["Count"] = json!(count + 1);
            }
            1 => group["Tasks"][0]["Config"]["image"] = json!("other:9.9"),
            2 => group["Tasks"][0]["Env"] = json!(BTreeMap::from([("NEW", "1")])),
            3 => group["Tasks"][0]["Resources"]["MemoryMB"] = json!(4096),
            _ => group["Services"][0]["Tags"] = json!(["changed"]),
        }
        // Explicit defaults on one side only must not hide (or fake) the change.
        prop_assert_ne!(spec_hash(&with_defaults(&job, mask)), spec_hash(&changed));
    }
}
