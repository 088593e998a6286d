"""Every refusal in docex has a stable code and a one-line message a person understands.
The catalogue below is the single list: the hub's rejections, the agent's quarantine,
the CLI's exit messages and the dashboard all speak these codes."""

from __future__ import annotations

from docex.pki.errors import PkiError

# code -> (中文, English). Keep codes stable: scripts and alert rules rely on them.
CODES: dict[str, tuple[str, str]] = {
    "signature_invalid": ("签名无效或内容已被篡改", "the signature does not verify or the content was changed"),
    "certificate_untrusted": ("证书不是受信任的发证机构签发的", "the certificate is not from a trusted CA"),
    "certificate_revoked": ("证书已被吊销", "the certificate has been revoked"),
    "certificate_expired": ("证书已过期或尚未生效", "the certificate has expired or is not yet valid"),
    "wrong_certificate_role": ("证书用途不符", "the certificate is not for this use"),
    "sender_mismatch": ("签名单位与发送单位不一致", "the signer is not the unit that sent it"),
    "not_a_recipient": ("本单位不是该公文的收文单位", "this unit is not a recipient of the document"),
    "decryption_failed": ("无法解密：内容损坏或被篡改", "cannot decrypt: damaged or changed"),
    "digest_mismatch": ("文件摘要不符：文件已被改动", "a file's digest does not match: it was changed"),
    "malformed_envelope": ("公文封包格式错误", "the envelope is not well formed"),
    "unsupported_version": ("不支持的协议版本", "unsupported protocol version"),
    "too_large": ("超过大小限制", "over the size limit"),
    "unsafe_filename": ("文件名不安全", "unsafe file name in the package"),
    "duplicate": ("重复的公文编号（重放）", "duplicate message id (replay)"),
    "unknown_recipient": ("收文单位不存在", "unknown recipient"),
    "unknown_sender": ("发文单位未登记", "the sending unit is not registered"),
    "recipient_disabled": ("收文单位已停用", "the recipient is disabled"),
    "sender_disabled": ("发文单位已停用", "the sending unit is disabled"),
    "classified": ("涉密公文不得在本网传输", "classified documents are not allowed on this network"),
    "bad_metadata": ("公文要素不完整或不合规", "document metadata missing or invalid"),
    "seal_invalid": ("电子印章验证失败", "the electronic seal does not verify"),
    "directory_untrusted": ("通讯录签名无效", "the directory is not signed by the hub"),
    "receipt_invalid": ("回执无效", "invalid receipt"),
    "paper_route": ("收文单位不在网上，请以纸质方式送达", "the recipient is off the network: send on paper"),
    "crl_missing": ("缺少当前的证书吊销列表", "no current CRL"),
    "no_passphrase": ("缺少密钥口令", "no key passphrase"),
    "key_locked": ("私钥已加密，需要口令", "the private key needs its passphrase"),
    "key_unreadable": ("无法读取私钥", "cannot read the private key"),
    "no_credentials": ("缺少证书或密钥文件", "certificate or key files missing"),
    "ca_exists": ("发证机构已存在", "a CA already exists here"),
    "no_ca": ("未找到发证机构", "no CA here"),
    "unknown_serial": ("没有该序列号的证书", "no certificate with that serial"),
    "already_revoked": ("证书已吊销", "already revoked"),
    "bad_reason": ("吊销原因无效", "invalid revocation reason"),
    "bad_address": ("地址格式错误", "invalid address"),
    "weak_key": ("密钥强度不足", "the key is too weak"),
    "certificate_unreadable": ("无法读取证书文件", "cannot read the certificate file"),
    "crl_unreadable": ("无法读取证书吊销列表", "cannot read the CRL file"),
    "no_recipients": ("没有收文单位", "no recipients given"),
}


class DocexError(PkiError):
    """A protocol-level refusal; shares PkiError's (code, message) so callers catch one type."""


def describe(code: str, lang: str = "zh") -> str:
    zh, en = CODES.get(code, ("", ""))
    return zh if lang == "zh" else en
