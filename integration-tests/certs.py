"""Test certificates, made with the openssl command: a CA, server certificates for
127.0.0.1/localhost, client certificates (one expired), and a second CA nobody trusts."""
import subprocess
from pathlib import Path


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Authority:
    """A certificate authority in `directory` that signs PEM certificates."""

    def __init__(self, directory, name="Tributary Test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        slug = name.replace(" ", "-").lower()
        self.key, self.cert = self.dir / f"{slug}.key", self.dir / f"{slug}.pem"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", self.cert,
                 "-days", "30", "-subj", f"/O=Tributary/CN={name}", cwd=self.dir)
        self._serial = 1000

    def issue(self, name, subject, sans=None, expired=False):
        """Issues a certificate; returns (cert path, key path, combined key+chain path)."""
        key, csr, cert = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.pem"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject, cwd=self.dir)
        ext = self.dir / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment",
                 "extendedKeyUsage=serverAuth,clientAuth"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        self._serial += 1
        if expired:
            self._sign_expired(csr, cert, ext)
        else:
            _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-set_serial", str(self._serial),
                     "-out", cert, "-days", "30", "-sha256", "-extfile", ext, cwd=self.dir)
        combined = self.dir / f"{name}-keystore.pem"
        combined.write_text(key.read_text() + cert.read_text())
        return cert, key, combined

    def _sign_expired(self, csr, cert, ext):
        # `openssl x509` cannot set dates in the past; `openssl ca` can.
        db = self.dir / "ca-db"
        db.mkdir(exist_ok=True)
        (db / "index.txt").touch()
        (db / "serial").write_text(f"{self._serial:04X}\n")
        conf = self.dir / "ca.cnf"
        conf.write_text(f"""[ ca ]
default_ca = test
[ test ]
database = {db}/index.txt
new_certs_dir = {db}
serial = {db}/serial
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
""")
        _openssl("ca", "-batch", "-config", conf, "-cert", self.cert, "-keyfile", self.key, "-in", csr, "-out", cert,
                 "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-notext", "-extfile", ext,
                 cwd=self.dir)


def server_sans():
    return ["DNS:localhost", "IP:127.0.0.1"]
