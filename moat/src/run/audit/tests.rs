use super::*;

fn events() -> Vec<AuditEvent> {
    vec![
        AuditEvent::Credential {
            grant: "github".into(),
            provider: "github".into(),
            source: "store".into(),
        },
        AuditEvent::Container {
            action: "created".into(),
            id: "4f2a".into(),
            image: "debian:bookworm-slim".into(),
        },
        AuditEvent::Policy {
            host: "example.com".into(),
            method: "GET".into(),
            path: "/x".into(),
            reason: "host not allowed".into(),
        },
        AuditEvent::Exec {
            command: vec!["ls".into(), "-l".into()],
            exit_code: Some(0),
        },
    ]
}

/// A log with the four events; returns its path.
fn log_with_events(dir: &Path) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for event in events() {
        log.append(&event).unwrap();
    }
    path
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn entries_chain_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_with_events(dir.path());
    let result = verify(&path).unwrap();
    assert_eq!(result.tamper, None);
    assert_eq!(result.entries.len(), 4);
    let kinds: Vec<&str> = result.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["credential", "container", "policy", "exec"]);

    // The hash, recomputed here from the documented layout.
    let mut prev = String::new();
    for (i, entry) in result.entries.iter().enumerate() {
        assert_eq!(entry.seq, i as u64 + 1);
        assert_eq!(entry.prev_hash, prev);
        let mut bytes = entry.seq.to_be_bytes().to_vec();
        for part in [&entry.ts, &entry.kind, &entry.prev_hash, &entry.data] {
            bytes.extend_from_slice(part.as_bytes());
        }
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(entry.hash, hex);
        assert!(
            entry.ts.ends_with('Z') && entry.ts.len() == 30,
            "{}",
            entry.ts
        );
        assert!(entry.time().is_some());
        prev = entry.hash.clone();
    }
    let summaries: Vec<String> = result.entries.iter().map(AuditEntry::summary).collect();
    assert_eq!(
        summaries,
        [
            "github via github (store)",
            "created 4f2a (debian:bookworm-slim)",
            "denied GET example.com/x: host not allowed",
            "ls -l exited 0",
        ]
    );
    let first: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6);
    assert_eq!(first["data"]["grant"], "github");
    assert_eq!(first["type"], "credential");
    assert_eq!(first["prev_hash"], "");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for file in [path.clone(), head_path(&path)] {
            let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }
}

#[test]
fn one_writer_and_reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    assert!(log.is_empty());
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Busy { .. })
    ));
    let first = log.append(&events()[0]).unwrap();
    drop(log);

    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.len(), 1);
    let second = log.append(&events()[3]).unwrap();
    assert_eq!(
        (second.seq, second.prev_hash.as_str()),
        (2, first.hash.as_str())
    );
    drop(log);
    assert_eq!(verify(&path).unwrap().tamper, None);

    // Appends from several threads are serialized into one chain.
    let log = std::sync::Arc::new(AuditLog::open(&path).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                for event in events() {
                    log.append(&event).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(log.len(), 18);
    let result = verify(&path).unwrap();
    assert_eq!((result.tamper, result.entries.len()), (None, 18));
}

#[test]
fn tampering_is_found_with_the_first_bad_seq() {
    type Edit = fn(&Path, &mut Vec<String>);
    let cases: Vec<(&str, Edit, u64, &str)> = vec![
        (
            "edited data",
            |_, l| l[1] = l[1].replace("4f2a", "ffff"),
            2,
            "entry 2 was changed",
        ),
        (
            "edited ts",
            |_, l| l[0] = l[0].replace("\"ts\":\"2", "\"ts\":\"3"),
            1,
            "entry 1 was changed",
        ),
        (
            "edited type",
            |_, l| l[2] = l[2].replace("\"policy\"", "\"exec\""),
            3,
            "entry 3 was changed",
        ),
        (
            "deleted middle line",
            |_, l| drop(l.remove(1)),
            2,
            "holds entry 3 where entry 2 belongs",
        ),
        (
            "reordered lines",
            |_, l| l.swap(1, 2),
            2,
            "holds entry 3 where entry 2 belongs",
        ),
        (
            "repeated line",
            |_, l| l.insert(2, l[1].clone()),
            3,
            "holds entry 2 where entry 3 belongs",
        ),
        (
            "garbage line",
            |_, l| l[2] = "{\"seq\":3".into(),
            3,
            "line 3 is not a valid audit entry",
        ),
        (
            "extra key",
            |_, l| l[0] = l[0].replacen('{', "{\"x\":1,", 1),
            1,
            "line 1 is not a valid",
        ),
        (
            "deleted last line",
            |_, l| drop(l.pop()),
            4,
            "entries were removed from the end",
        ),
        (
            "entry rehashed, chain broken after it",
            |_, l| {
                let mut v: serde_json::Value = serde_json::from_str(&l[1]).unwrap();
                v["data"]["image"] = "evil".into();
                let data = serde_json::to_string(&v["data"]).unwrap();
                let hash = entry_hash(
                    2,
                    v["ts"].as_str().unwrap(),
                    "container",
                    v["prev_hash"].as_str().unwrap(),
                    &data,
                );
                v["hash"] = hash.into();
                l[1] = serde_json::to_string(&v).unwrap();
            },
            3,
            "entry 3's prev_hash is not the hash of the entry before it",
        ),
        (
            "head removed",
            |p, _| fs::remove_file(head_path(p)).unwrap(),
            5,
            "audit.head is missing",
        ),
        (
            "every line removed",
            |_, l| l.clear(),
            1,
            "the log ends at entry 0 but its head says 4",
        ),
        (
            "head garbled",
            |p, _| fs::write(head_path(p), "{").unwrap(),
            5,
            "audit.head is not valid",
        ),
    ];
    for (name, edit, seq, what) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = log_with_events(dir.path());
        let mut l = lines(&path);
        edit(&path, &mut l);
        write_lines(&path, &l);
        let tamper = verify(&path)
            .unwrap()
            .tamper
            .unwrap_or_else(|| panic!("{name}: not found"));
        assert_eq!(tamper.seq, seq, "{name}: {tamper}");
        assert!(tamper.what.contains(what), "{name}: {tamper}");
        // A log that does not verify is not continued.
        assert!(
            matches!(AuditLog::open(&path), Err(AuditError::Tampered { .. })),
            "{name}"
        );
    }
}

#[test]
fn a_truncated_last_line_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_with_events(dir.path());
    let bytes = fs::read(&path).unwrap();
    for cut in [1, 10] {
        fs::write(&path, &bytes[..bytes.len() - cut]).unwrap();
        let tamper = verify(&path).unwrap().tamper.unwrap();
        assert_eq!(tamper.seq, 4, "{tamper}");
        assert!(tamper.what.contains("incomplete"), "{tamper}");
    }
}

#[test]
fn a_head_one_behind_is_a_crash_not_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_with_events(dir.path());
    let third = verify(&path).unwrap().entries[2].clone();
    write_head(&path, 3, &third.hash).unwrap();
    assert_eq!(verify(&path).unwrap().tamper, None);
    write_head(&path, 2, &third.hash).unwrap();
    assert!(verify(&path).unwrap().tamper.is_some());
}
