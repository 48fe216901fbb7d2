//! Reading the file and validating the configuration as a whole.

use super::*;

impl Config {
    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let mut cfg = Config::parse(&text, &path.display().to_string())?;
        cfg.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = cfg.base_dir.clone();
        let origin = path.display().to_string();
        for (_, s) in cfg.secrets_mut() {
            if let Some(f) = s.file.as_mut().filter(|f| f.is_relative()) {
                *f = base.join(&*f);
            }
            if let SecretAt::Span(span) = &s.at {
                let (line, col) = line_col(&text, span.start);
                s.at = SecretAt::Text(format!("{origin}:{line}:{col}"));
            }
        }
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(t) = &mut cfg.listen.tls {
            rel(&mut t.cert_file);
            rel(&mut t.key_file);
            t.client_ca_file.iter_mut().for_each(rel);
        }
        for u in &mut cfg.upstreams {
            u.cwd.iter_mut().for_each(rel);
            u.sandbox.read_only.iter_mut().chain(u.sandbox.read_write.iter_mut()).for_each(rel);
            if let Some(f) = &mut u.files {
                f.roots.iter_mut().for_each(rel);
            }
            if let Some(q) = &mut u.sql {
                q.database.iter_mut().for_each(rel);
            }
        }
        rel(&mut cfg.audit.path);
        cfg.audit.checkpoint_file.iter_mut().for_each(rel);
        for f in &mut cfg.audit.forward {
            f.spool.iter_mut().for_each(rel);
        }
        rel(&mut cfg.audit.signing_key);
        cfg.audit.retention.archive_dir.iter_mut().for_each(rel);
        cfg.store.ca_file.iter_mut().for_each(rel);
        Ok(cfg)
    }

    /// Every secret reference in the config, with its key (`upstream "x".secret_env.TOKEN`). One
    /// list, so that relative paths, locations and `warden check` miss none.
    pub fn secrets_mut(&mut self) -> Vec<(String, &mut SecretRef)> {
        let mut out: Vec<(String, &mut SecretRef)> = Vec::new();
        fn map<'a>(out: &mut Vec<(String, &'a mut SecretRef)>, at: &str, m: &'a mut BTreeMap<String, SecretRef>) {
            out.extend(m.iter_mut().map(|(k, s)| (format!("{at}.{k}"), s)));
        }
        if let Some(a) = &mut self.auth {
            if let Some(i) = &mut a.introspection {
                out.push(("auth.introspection.client_secret".into(), &mut i.client_secret));
            }
            for (n, j) in a.issuers.iter_mut().enumerate() {
                if let Some(s) = &mut j.sign_in_client_secret {
                    out.push((format!("auth.jwt[{n}].sign_in_client_secret"), s));
                }
            }
        }
        for u in &mut self.upstreams {
            let at = format!("upstream {:?}", u.name);
            map(&mut out, &format!("{at}.secret_env"), &mut u.secret_env);
            map(&mut out, &format!("{at}.secret_headers"), &mut u.secret_headers);
            if let Some(p) = u.sql.as_mut().and_then(|q| q.password.as_mut()) {
                out.push((format!("{at}.sql.password"), p));
            }
            if let Some(s) = u.oauth.as_mut().and_then(|o| o.client_secret.as_mut()) {
                out.push((format!("{at}.oauth.client_secret"), s));
            }
            for (t, o) in &mut u.tenants {
                map(&mut out, &format!("{at}.tenants.{t}.secret_env"), &mut o.secret_env);
                map(&mut out, &format!("{at}.tenants.{t}.secret_headers"), &mut o.secret_headers);
            }
        }
        if let Some(p) = &mut self.store.password {
            out.push(("store.password".into(), p));
        }
        if let Some(k) = &mut self.cluster.key {
            out.push(("cluster.key".into(), k));
        }
        for (i, k) in self.cluster.previous_keys.iter_mut().enumerate() {
            out.push((format!("cluster.previous_keys[{i}]"), k));
        }
        if let Some(a) = &mut self.admin {
            out.push(("admin.token".into(), &mut a.token));
        }
        if let Some(v) = &mut self.vault {
            out.push(("vault.key".into(), &mut v.key));
            for (i, k) in v.previous_keys.iter_mut().enumerate() {
                out.push((format!("vault.previous_keys[{i}]"), k));
            }
            if let Some(p) = &mut v.password {
                out.push(("vault.password".into(), p));
            }
        }
        if let Some(p) = &mut self.audit.password {
            out.push(("audit.password".into(), p));
        }
        for f in &mut self.audit.forward {
            map(&mut out, &format!("audit.forward {:?}.secret_headers", f.name), &mut f.secret_headers);
        }
        out
    }

    /// Every key and secret file Warden reads, with what it is: the audit and built-in server
    /// signing keys, the built-in server's users, the TLS private key, and every secret given as
    /// a file. Paths as resolved (defaults included), whether or not they exist yet.
    pub fn secret_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        if self.audit.enabled {
            out.push(("audit.signing_key".to_string(), self.audit.signing_key.clone()));
        }
        if let Some(b) = self.auth.as_ref().and_then(|a| a.builtin.as_ref()) {
            let or = |p: &Option<PathBuf>, d: &str| self.path(&p.clone().unwrap_or_else(|| d.into()));
            out.push(("auth.builtin.key_file".into(), or(&b.key_file, "warden-data/signing-key.pk8")));
            out.push(("auth.builtin.users_file".into(), or(&b.users_file, "warden-data/users.toml")));
            for f in &b.previous_key_files {
                out.push(("auth.builtin.previous_key_files".into(), self.path(f)));
            }
        }
        if let Some(t) = &self.listen.tls {
            out.push(("listen.tls.key_file".into(), t.key_file.clone()));
        }
        let mut c = self.clone();
        for (key, s) in c.secrets_mut() {
            if let Some(f) = &s.file {
                out.push((key, f.clone()));
            }
        }
        out
    }

    /// Resolve every secret reference now (reading each, keeping none): one line per reference
    /// that cannot be read, `file:line:col: key: why`. For `warden check`.
    pub fn check_secrets(&mut self) -> Vec<String> {
        self.secrets_mut()
            .into_iter()
            .filter_map(|(key, s)| {
                let e = s.resolve().err()?;
                Some(match s.location() {
                    Some(at) => format!("{at}: {key}: {e}"),
                    None => format!("{key}: {e}"),
                })
            })
            .collect()
    }

    /// `p` resolved against the config file's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Parse and validate text; `origin` names the source in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError(format!("{origin}:{line}:{col}: {}", e.message().trim()))
        })?;
        cfg.validate().map_err(|m| ConfigError(format!("{origin}: {m}")))?;
        Ok(cfg)
    }

    /// Check the configuration as a whole (after parsing, or after a CLI override).
    pub fn validate(&self) -> Result<(), String> {
        if !self.listen.addr.ip().is_loopback() {
            let Some(auth) = &self.auth else {
                return Err(format!(
                    "listen.addr: refusing to bind non-loopback address {} because no authentication \
                     is configured; add [auth] or bind 127.0.0.1 or ::1",
                    self.listen.addr
                ));
            };
            if auth.resource.is_none() {
                return Err("auth.resource: required on a non-loopback bind (the public URL of /mcp)".into());
            }
            if self.listen.tls.is_none() && self.listen.trusted_proxies.is_empty() {
                return Err(format!(
                    "listen: refusing plain HTTP on non-loopback address {}; configure [listen.tls] or, \
                     behind a TLS-terminating proxy, listen.trusted_proxies",
                    self.listen.addr
                ));
            }
        }
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        if self.listen.max_sessions == 0 || self.listen.max_sessions_per_principal == 0 {
            return Err("listen: max_sessions and max_sessions_per_principal must be at least 1".into());
        }
        crate::policy::compile_limits(self)?;
        let a = &self.audit;
        match &a.url {
            Some(u) if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) => {
                return Err("audit.url: expected postgres://user@host:port/dbname".into())
            }
            None if a.password.is_some() => return Err("audit.password: only with url (PostgreSQL)".into()),
            _ => {}
        }
        if let Some(u) = &self.telemetry.traces_url {
            check_remote_url(u).map_err(|e| format!("telemetry.traces_url: {e}"))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for f in &a.forward {
            let at = format!("audit.forward {:?}", f.name);
            if !valid_name(&f.name) || !names.insert(&f.name) {
                return Err(format!("{at}: name must be unique, 1-32 of [A-Za-z0-9_-]"));
            }
            check_remote_url(&f.url).map_err(|e| format!("{at}: url: {e}"))?;
            if f.batch == 0 || f.flush_ms == 0 || f.timeout_ms == 0 || f.spool_max_mb == 0 {
                return Err(format!("{at}: batch, flush_ms, timeout_ms and spool_max_mb must be at least 1"));
            }
        }
        if a.group_commit_ms > 100 {
            return Err("audit.group_commit_ms: at most 100".into());
        }
        if let Some(k) = &a.public_key {
            warden_audit::signing::parse_public_key(k).map_err(|e| format!("audit.public_key: {e}"))?;
        }
        if a.queue_capacity == 0 || a.checkpoint_every == 0 || a.checkpoint_secs == 0 {
            return Err("audit: queue_capacity, checkpoint_every and checkpoint_secs must be positive".into());
        }
        if a.instance.is_empty() || a.instance.len() > 64 || a.instance.chars().any(|c| c.is_control()) {
            return Err("audit.instance: 1 to 64 printable characters".into());
        }
        a.segments(&a.path)?;
        a.pg_retention()?;
        let st = &self.store;
        match st.backend {
            StoreBackend::Memory if st.url.is_some() || st.password.is_some() => {
                return Err("store: url and password are for backend = \"redis\"".into())
            }
            StoreBackend::Redis => {
                let url = st.url.as_deref().ok_or("store.url: required for backend = \"redis\"")?;
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err("store.url: expected redis://host:port or rediss://host:port".into());
                }
                if st.ca_file.is_some() && !st.url.as_deref().unwrap_or_default().starts_with("rediss://") {
                    return Err("store.ca_file: only for TLS (`rediss://` url)".into());
                }
                if !valid_name(&st.prefix) || st.timeout_ms == 0 {
                    return Err("store: prefix must be 1-32 of [A-Za-z0-9_-] and timeout_ms at least 1".into());
                }
            }
            _ => {}
        }
        if self.cluster.session_max_age_secs < 60 {
            return Err("cluster.session_max_age_secs: at least 60".into());
        }
        if self.cluster.key.is_none() && !self.cluster.previous_keys.is_empty() {
            return Err("cluster.previous_keys: only beside cluster.key".into());
        }
        let ap = &self.approval;
        if ap.wait_secs == 0 || ap.ttl_secs < ap.wait_secs {
            return Err("approval: wait_secs must be at least 1 and ttl_secs at least wait_secs".into());
        }
        if let Some(a) = &self.admin {
            if !a.addr.ip().is_loopback() {
                return Err("admin.addr: the admin API binds loopback only (reach it through SSH or a sidecar)".into());
            }
            if a.addr == self.listen.addr {
                return Err("admin.addr: must differ from listen.addr".into());
            }
            if a.token.env.is_some() == a.token.file.is_some() {
                return Err("admin.token: expected exactly one of env or file".into());
            }
        }
        if self.listen.max_body_bytes < 1024 || self.listen.max_json_depth < 8 {
            return Err("listen: max_body_bytes must be ≥ 1024 and max_json_depth ≥ 8".into());
        }
        let sep = &self.federation.separator;
        if sep.is_empty() || !sep.chars().all(is_tool_char) {
            return Err("federation.separator: expected one or more of [A-Za-z0-9_.-]".into());
        }
        if self.upstreams.is_empty() {
            return Err("upstream: expected at least one [[upstream]] table".into());
        }
        let mut names = std::collections::HashSet::new();
        let mut namespaces = std::collections::HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let at = format!("upstream[{i}]");
            if !valid_name(&u.name) {
                return Err(format!("{at}.name: expected 1-32 of [A-Za-z0-9_-], got {:?}", u.name));
            }
            if !names.insert(u.name.clone()) {
                return Err(format!("{at}.name: duplicate upstream name {:?}", u.name));
            }
            let ns = u.namespace();
            if !ns.is_empty() && !valid_name(ns) {
                return Err(format!("{at}.namespace: expected \"\" or 1-32 of [A-Za-z0-9_-]"));
            }
            if !ns.is_empty() && !namespaces.insert(ns.to_string()) {
                return Err(format!("{at}.namespace: {ns:?} is used by another upstream"));
            }
            match u.transport {
                Transport::Stdio => {
                    if u.command.as_deref().unwrap_or("").is_empty() {
                        return Err(format!("{at}.command: required for transport = \"stdio\""));
                    }
                    if u.sha256.as_ref().is_some_and(|d| d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit())) {
                        return Err(format!("{at}.sha256: expected 64 hex digits"));
                    }
                    if u.sandbox.strict() {
                        let cmd = u.command.as_deref().unwrap_or("");
                        if let Some(why) = crate::upstream::program::unpinned_launcher(cmd, &u.args) {
                            return Err(format!("{at}: {why} (refused: sandbox.strict)"));
                        }
                    }
                    if u.url.is_some() || !u.secret_headers.is_empty() || u.oauth.is_some() {
                        return Err(format!("{at}: url/secret_headers/oauth are for transport = \"http\""));
                    }
                }
                Transport::Http => {
                    let url = u.url.as_deref().ok_or(format!("{at}.url: required for transport = \"http\""))?;
                    check_remote_url(url).map_err(|m| format!("{at}.url: {m}"))?;
                    if let Some(o) = &u.oauth {
                        if let Some(t) = &o.token_url {
                            check_remote_url(t).map_err(|m| format!("{at}.oauth.token_url: {m}"))?;
                        }
                        if let Some(i) = &o.issuer {
                            check_remote_url(i).map_err(|m| format!("{at}.oauth.issuer: {m}"))?;
                        }
                        let client = o.client_id.is_some() && o.client_secret.is_some();
                        match o.mode {
                            OAuthMode::Service | OAuthMode::Exchange if o.token_url.is_none() || !client => {
                                return Err(format!(
                                    "{at}.oauth: token_url, client_id and client_secret are required with mode = \"{}\"",
                                    if o.mode == OAuthMode::Service { "service" } else { "exchange" }
                                ))
                            }
                            OAuthMode::User if o.token_url.is_some() || !o.subject_issuers.is_empty() => {
                                return Err(format!(
                                    "{at}.oauth: token_url and subject_issuers are not for mode = \"user\" (its \
                                     authorization server is found from the upstream)"
                                ))
                            }
                            OAuthMode::User if o.client_secret.is_some() && o.client_id.is_none() => {
                                return Err(format!("{at}.oauth.client_secret: given without client_id"))
                            }
                            OAuthMode::User if o.client_secret.is_some() && o.issuer.is_none() => {
                                return Err(format!(
                                    "{at}.oauth.issuer: required with client_secret (the authorization server \
                                     the secret may be sent to)"
                                ))
                            }
                            OAuthMode::User if self.vault.is_none() => {
                                return Err(format!(
                                    "{at}.oauth.mode = \"user\" keeps each user's tokens in the credential vault: \
                                     [vault] with a key is required"
                                ))
                            }
                            OAuthMode::User if self.auth.is_none() => {
                                return Err(format!(
                                    "{at}.oauth.mode = \"user\" links each user's account: [auth] is required (an \
                                     anonymous caller has no account to link)"
                                ))
                            }
                            OAuthMode::Exchange
                                if self.auth.as_ref().is_none_or(|a| a.issuers.is_empty() && a.introspection.is_none() && a.builtin.is_none()) =>
                            {
                                return Err(format!(
                                    "{at}.oauth.mode = \"exchange\" needs callers with tokens to exchange: [auth] with a JWT issuer, introspection or the built-in server"
                                ))
                            }
                            OAuthMode::Exchange if o.subject_issuers.is_empty() => {
                                return Err(format!(
                                    "{at}.oauth.subject_issuers: required with mode = \"exchange\" (the issuers whose \
                                     callers' tokens may be sent to the upstream's authorization server)"
                                ))
                            }
                            _ => {}
                        }
                    }
                    if u.command.is_some() || !u.args.is_empty() || !u.env.is_empty() || !u.secret_env.is_empty() {
                        return Err(format!("{at}: command/args/env/secret_env are for transport = \"stdio\""));
                    }
                }
                Transport::Builtin => {
                    if u.command.is_some() || !u.args.is_empty() || u.url.is_some() || u.oauth.is_some() {
                        return Err(format!("{at}: command/args/url/oauth are not for transport = \"builtin\""));
                    }
                    if u.files.is_none() && u.sql.is_none() {
                        return Err(format!("{at}: transport = \"builtin\" needs [upstream.files] or [upstream.sql]"));
                    }
                    if !u.tenants.is_empty() {
                        return Err(format!("{at}.tenants: not supported for transport = \"builtin\""));
                    }
                    if let Some(f) = &u.files {
                        if f.roots.is_empty() {
                            return Err(format!("{at}.files.roots: at least one directory"));
                        }
                    }
                    if let Some(q) = &u.sql {
                        if q.tables.is_empty() && !q.raw_query {
                            return Err(format!("{at}.sql.tables: at least one table (or raw_query = true)"));
                        }
                        if q.max_rows == 0 || q.timeout_ms == 0 {
                            return Err(format!("{at}.sql: max_rows and timeout_ms must be at least 1"));
                        }
                        match (&q.database, &q.url) {
                            (Some(_), None) if q.password.is_none() => {}
                            (None, Some(url)) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                            }
                            (None, Some(_)) => {
                                return Err(format!("{at}.sql.url: expected postgres://user@host:port/dbname"))
                            }
                            (Some(_), None) => return Err(format!("{at}.sql.password: only with url (PostgreSQL)")),
                            _ => return Err(format!("{at}.sql: exactly one of database (SQLite) or url (PostgreSQL)")),
                        }
                    }
                }
            }
            if u.transport != Transport::Builtin && (u.files.is_some() || u.sql.is_some()) {
                return Err(format!("{at}: [upstream.files] and [upstream.sql] are for transport = \"builtin\""));
            }
            for (k, s) in u.secret_env.iter().chain(u.secret_headers.iter()) {
                if s.env.is_some() == s.file.is_some() {
                    return Err(format!("{at}: secret {k:?}: expected exactly one of env or file"));
                }
            }
            if u.call_timeout_secs == 0 || u.connect_timeout_secs == 0 {
                return Err(format!("{at}: timeouts must be at least 1 second"));
            }
            if u.tenant_only && u.tenants.is_empty() {
                return Err(format!("{at}.tenant_only: needs at least one [upstream.tenants.<tenant>]"));
            }
            for (t, o) in &u.tenants {
                let at = format!("{at}.tenants.{t}");
                match u.transport {
                    Transport::Stdio if o.url.is_some() || !o.secret_headers.is_empty() => {
                        return Err(format!("{at}: url/secret_headers are for transport = \"http\""));
                    }
                    Transport::Http if o.args.is_some() || !o.env.is_empty() || !o.secret_env.is_empty() => {
                        return Err(format!("{at}: args/env/secret_env are for transport = \"stdio\""));
                    }
                    _ => {}
                }
                if let Some(url) = &o.url {
                    check_remote_url(url).map_err(|m| format!("{at}.url: {m}"))?;
                }
                for (k, s) in o.secret_env.iter().chain(o.secret_headers.iter()) {
                    if s.env.is_some() == s.file.is_some() {
                        return Err(format!("{at}: secret {k:?}: expected exactly one of env or file"));
                    }
                }
            }
        }
        crate::policy::compile_rules(self)?;
        crate::content::Content::new(self)?;
        Ok(())
    }
}
