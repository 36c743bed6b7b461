"""RMCP+ cipher suites: RAKP key exchange, packet integrity and AES-CBC-128 confidentiality.

IPMI 2.0 section 13.28-13.29. HMACs come from `hmac`/`hashlib`, AES from `cryptography`
(imported on first use: most of a BMC's life needs no AES, and start-up time matters).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

# algorithm numbers (tables 13-17, 13-18, 13-19)
AUTH_NONE, AUTH_HMAC_SHA1, AUTH_HMAC_MD5, AUTH_HMAC_SHA256 = 0, 1, 2, 3
INTEGRITY_NONE, INTEGRITY_HMAC_SHA1_96, INTEGRITY_HMAC_SHA256_128 = 0, 1, 4
CONF_NONE, CONF_AES_CBC_128 = 0, 1

# key-derivation constants: 20 bytes for every suite, as in ipmitool and pyghmi
_CONST_1 = b"\x01" * 20
_CONST_2 = b"\x02" * 20


@dataclass(frozen=True)
class CipherSuite:
    suite_id: int
    auth: int
    integrity: int
    confidentiality: int
    digest: str  # hashlib name for RAKP and integrity HMACs
    #: bytes of the RAKP4 integrity check value and of each packet's AuthCode
    icv_length: int

    def record(self) -> bytes:
        """This suite's record in Get Channel Cipher Suites (table 22-19)."""
        return bytes((0xC0, self.suite_id, self.auth, 0x40 | self.integrity,
                      0x80 | self.confidentiality))


SUITE_3 = CipherSuite(3, AUTH_HMAC_SHA1, INTEGRITY_HMAC_SHA1_96, CONF_AES_CBC_128, "sha1", 12)
SUITE_17 = CipherSuite(17, AUTH_HMAC_SHA256, INTEGRITY_HMAC_SHA256_128, CONF_AES_CBC_128,
                       "sha256", 16)

#: what we offer, strongest first. Suite 0 (no authentication) is never offered.
SUPPORTED_SUITES: tuple[CipherSuite, ...] = (SUITE_17, SUITE_3)


def find_suite(auth: int, integrity: int, confidentiality: int) -> CipherSuite | None:
    for suite in SUPPORTED_SUITES:
        if (suite.auth, suite.integrity, suite.confidentiality) == (auth, integrity,
                                                                     confidentiality):
            return suite
    return None


def hmac_digest(suite: CipherSuite, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, suite.digest).digest()


@dataclass
class SessionKeys:
    """Keys of one established RMCP+ session."""

    suite: CipherSuite
    sik: bytes
    k1: bytes
    aes_key: bytes

    @classmethod
    def derive(cls, suite: CipherSuite, kg: bytes, rakp_material: bytes) -> SessionKeys:
        """SIK = HMAC_Kg(Rm | Rc | Role | ULen | UName); K1, K2 from SIK (13.31, 13.32)."""
        sik = hmac_digest(suite, kg, rakp_material)
        k1 = hmac_digest(suite, sik, _CONST_1)
        k2 = hmac_digest(suite, sik, _CONST_2)
        return cls(suite, sik, k1, k2[:16])

    def sign(self, signed: bytes) -> bytes:
        """Packet AuthCode: HMAC_K1 truncated to the suite's integrity length."""
        return hmac_digest(self.suite, self.k1, signed)[: self.suite.icv_length]

    def verify(self, signed: bytes, authcode: bytes) -> bool:
        return hmac.compare_digest(self.sign(signed), authcode)

    def encrypt(self, plaintext: bytes) -> bytes:
        """AES-CBC-128 payload: IV, then ciphertext of data + pad 1,2,3.. + pad length."""
        pad = -(len(plaintext) + 1) % 16
        block = plaintext + bytes(range(1, pad + 1)) + bytes((pad,))
        iv = os.urandom(16)
        encryptor = _aes(self.aes_key, iv).encryptor()
        return iv + encryptor.update(block) + encryptor.finalize()

    def decrypt(self, payload: bytes) -> bytes:
        if len(payload) < 32 or len(payload) % 16:
            raise ValueError("bad AES-CBC-128 payload length")
        decryptor = _aes(self.aes_key, payload[:16]).decryptor()
        block = decryptor.update(payload[16:]) + decryptor.finalize()
        pad = block[-1]
        if pad >= 16:
            raise ValueError("bad confidentiality pad")
        return block[: -1 - pad]


def load_aes() -> None:
    """Load AES now rather than in the first encrypted session (`serve` calls this)."""
    _aes(bytes(16), bytes(16)).encryptor().finalize()  # the first use initialises OpenSSL too


def _aes(key: bytes, iv: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.CBC(iv))


def md5_authcode(password: bytes, session_id: bytes, message: bytes, sequence: bytes) -> bytes:
    """IPMI 1.5 MD5 AuthCode (22.17.1): MD5(password | SID | msg | seq | password)."""
    key = password.ljust(16, b"\x00")[:16]
    return hashlib.md5(key + session_id + message + sequence + key).digest()
