"""sipd/tls.py client_context: providers' certificates are verified, PBX_TRUNK_TLS_CA adds CAs,
and a file that is not one is refused with a message naming the setting."""

import ssl

import pytest

from core.config import ConfigError
from sipd import tls


def test_the_client_verifies_the_chain_and_the_name():
    context = tls.client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "is not a readable file"),
        ("not a certificate\n", "holds no usable PEM certificate"),
    ],
)
def test_a_ca_file_that_is_not_one_is_refused(tmp_path, content, message):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"PBX_TRUNK_TLS_CA: {path} {message}"):
        tls.client_context(str(path))
