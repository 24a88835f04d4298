"""Test certificates, made fresh by the tests that need them (nothing is committed).

    pki = TestPki(tmp_path)                      # a CA
    server = pki.server()                        # cert + key for 127.0.0.1 / localhost
    alice = pki.client("CN=alice,OU=dev,O=Strata")
    server.cert, server.key, pki.ca_cert         # PEM file paths
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ATTRS = {"CN": NameOID.COMMON_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "O": NameOID.ORGANIZATION_NAME,
          "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "C": NameOID.COUNTRY_NAME}


def _name(dn: str) -> x509.Name:
    """"CN=alice,OU=dev,O=Strata" → an x509 Name whose RFC 2253 form is the same string."""
    parts = [p.split("=", 1) for p in dn.split(",")]
    # RFC 2253 prints the last RDN first, so build in reverse.
    return x509.Name([x509.NameAttribute(_ATTRS[k.strip()], v.strip()) for k, v in reversed(parts)])


@dataclasses.dataclass
class Issued:
    cert: pathlib.Path
    key: pathlib.Path
    subject: str

    @property
    def chain_pem(self) -> str:
        return self.cert.read_text()


class TestPki:
    __test__ = False  # not a pytest class

    def __init__(self, directory: pathlib.Path, name: str = "ca"):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(f"CN=Strata test CA {name}")
        now = datetime.datetime.now(datetime.timezone.utc)
        self._cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                      .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                      .not_valid_before(now - datetime.timedelta(hours=1))
                      .not_valid_after(now + datetime.timedelta(days=30))
                      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                      .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                   content_commitment=False, key_encipherment=False,
                                                   data_encipherment=False, key_agreement=False,
                                                   encipher_only=False, decipher_only=False), critical=True)
                      .sign(self._key, hashes.SHA256()))
        self.ca_cert = self.dir / f"{name}.pem"
        self.ca_cert.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def _issue(self, file_stem: str, subject: str, *, server: bool, days: float = 30) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(self._cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path = self.dir / f"{file_stem}.pem"
        key_path = self.dir / f"{file_stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return Issued(cert_path, key_path, subject)

    def server(self, file_stem: str = "server", subject: str = "CN=localhost,O=Strata") -> Issued:
        return self._issue(file_stem, subject, server=True)

    def client(self, subject: str, file_stem: str | None = None) -> Issued:
        stem = file_stem or "client-" + subject.split(",")[0].split("=", 1)[1]
        return self._issue(stem, subject, server=False)
