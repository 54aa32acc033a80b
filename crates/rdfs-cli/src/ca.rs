//! `rdfs ca init` and `rdfs ca issue`: the cluster's certificate authority
//! for mutual TLS (`[security] tls_enabled`), with no tool but `rdfs`.
//!
//! A certificate's subject says who holds it: the common name is the user
//! or daemon name, the organizational unit its role. Servers accept a peer
//! only if its certificate chains to the CA, so the CA's key is what an
//! operator guards; it is written readable by its owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use rdfs_common::tls::Role;

const USAGE: &str = "Usage: rdfs ca init [-dir DIR] [-days N] [-force]\n       \
rdfs ca issue -role namenode|datanode|journalnode|client -name NAME [-dir DIR] [-host H[,H...]] [-days N] [-out PREFIX]";

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";

pub fn main(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("warn");
    match run(args) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("ca: {err:#}");
            1
        }
    }
}

struct Options {
    dir: PathBuf,
    days: i64,
    force: bool,
    role: Option<Role>,
    name: Option<String>,
    hosts: Vec<String>,
    out: Option<PathBuf>,
}

fn parse(args: Vec<String>) -> Result<Options> {
    let mut options = Options {
        dir: PathBuf::from("."),
        days: 365,
        force: false,
        role: None,
        name: None,
        hosts: Vec::new(),
        out: None,
    };
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let mut value = |what: &str| {
            iter.next()
                .with_context(|| format!("{arg} needs {what}\n{USAGE}"))
        };
        match arg.trim_start_matches('-') {
            "dir" => options.dir = PathBuf::from(value("a directory")?),
            "days" => {
                options.days = value("a number of days")?
                    .parse()
                    .ok()
                    .filter(|days| *days > 0)
                    .context("-days needs a positive number")?
            }
            "force" => options.force = true,
            "role" => {
                let role = value("a role")?;
                options.role = Some(Role::parse(&role).with_context(|| {
                    format!("unknown role {role:?}: namenode, datanode, journalnode or client")
                })?)
            }
            "name" => options.name = Some(value("a name")?),
            "host" => options.hosts.extend(
                value("host names or addresses")?
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_string),
            ),
            "out" => options.out = Some(PathBuf::from(value("a file prefix")?)),
            _ => bail!("unknown option {arg}\n{USAGE}"),
        }
    }
    Ok(options)
}

fn run(mut args: Vec<String>) -> Result<()> {
    if args.is_empty() {
        bail!("{USAGE}");
    }
    let verb = args.remove(0);
    let options = parse(args)?;
    match verb.as_str() {
        "init" => init(&options),
        "issue" => issue(&options),
        other => bail!("unknown ca command {other}\n{USAGE}"),
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks that differ between hosts.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// Writes `text` to `path`, readable by its owner only when `secret`.
fn write(path: &Path, text: &str, secret: bool, force: bool) -> Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if force {
        open.create(true).truncate(true);
    } else {
        open.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    let mut file = open.open(path).with_context(|| {
        if path.exists() && !force {
            format!("{} exists (use -force to replace it)", path.display())
        } else {
            format!("cannot write {}", path.display())
        }
    })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn init(options: &Options) -> Result<()> {
    std::fs::create_dir_all(&options.dir)
        .with_context(|| format!("cannot create {}", options.dir.display()))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "rdfs cluster CA");
    name.push(DnType::OrganizationName, "rdfs");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, options.days.max(3650));
    let key = KeyPair::generate().context("cannot generate the CA's key")?;
    let cert = params
        .self_signed(&key)
        .context("cannot sign the CA's certificate")?;
    let cert_path = options.dir.join(CA_CERT);
    let key_path = options.dir.join(CA_KEY);
    write(&key_path, &key.serialize_pem(), true, options.force)?;
    write(&cert_path, &cert.pem(), false, options.force)?;
    println!("CA certificate: {}", cert_path.display());
    println!("CA key (keep it safe): {}", key_path.display());
    Ok(())
}

fn issue(options: &Options) -> Result<()> {
    let role = options
        .role
        .context(format!("ca issue needs -role\n{USAGE}"))?;
    let name = options
        .name
        .clone()
        .context(format!("ca issue needs -name\n{USAGE}"))?;
    let read = |file: &str| {
        let path = options.dir.join(file);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (run `rdfs ca init -dir {}` first)",
                path.display(),
                options.dir.display()
            )
        })
    };
    let ca_key = KeyPair::from_pem(&read(CA_KEY)?).context("the CA's key is unreadable")?;
    let issuer = Issuer::from_ca_cert_pem(&read(CA_CERT)?, ca_key)
        .context("the CA's certificate is unreadable")?;

    // Servers are dialled by address or name: the certificate covers the
    // local ones, the machine's name, and any the operator lists.
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        hosts.push(hostname.trim().to_string());
    }
    hosts.extend(options.hosts.iter().cloned());
    hosts.retain(|h| !h.is_empty());
    hosts.dedup();
    let mut params = CertificateParams::new(hosts).context("bad host name")?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name.as_str());
    subject.push(DnType::OrganizationalUnitName, role.name());
    subject.push(DnType::OrganizationName, "rdfs");
    params.distinguished_name = subject;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, options.days);
    let key = KeyPair::generate().context("cannot generate a key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the certificate")?;
    let prefix = options
        .out
        .clone()
        .unwrap_or_else(|| options.dir.join(&name));
    let cert_path = PathBuf::from(format!("{}.pem", prefix.display()));
    let key_path = PathBuf::from(format!("{}-key.pem", prefix.display()));
    write(&key_path, &key.serialize_pem(), true, options.force)?;
    write(&cert_path, &cert.pem(), false, options.force)?;
    println!("{} certificate for {name}: {}", role, cert_path.display());
    println!("key: {}", key_path.display());
    Ok(())
}
