"""Supply chain: keys, cosign signatures, in-toto provenance, SBOMs and their verification.

Formats are the ones existing verifiers read (cosign, containers/image):

- `keys`: cosign's encrypted private key (scrypt + nacl/secretbox) and PEM keys;
- `formats`: simple-signing payloads, DSSE envelopes, in-toto statements (pure);
- `attach`: the `sha256-<hex>.sig` / `.att` attachments in the registry (I/O);
- `publish`: the apply step that signs and attests one pushed image;
- `bases`: the signature check of upstream bases before building;
- `verify`: `imagectl verify`;
- `sbom`: CycloneDX SBOMs from trivy.
"""
