# Creates TA, OP, keys, profiles, descendants (OP + RPs) and a test citizen
# through the Django ORM. Call after django.setup() and the DB sync.
from django.conf import settings

from spid_cie_oidc.accounts.models import User
from spid_cie_oidc.authority.models import (
    FederationDescendant, FederationEntityAssignedProfile, FederationEntityProfile)
from spid_cie_oidc.entity.jwks import create_jwk, public_jwk_from_private_jwk
from spid_cie_oidc.entity.models import FederationEntityConfiguration, StaffToken
from spid_cie_oidc.entity.validators import validate_public_jwks

USER = {
    "username": "citizen", "password": "citizen-Passw0rd",
    "fiscal_number": "TINIT-RSSMRA80A01H501U",
    "given_name": "Mario", "family_name": "Rossi", "email": "mario.rossi@example.it",
}
RP_PROFILE = "https://www.spid.gov.it/openid-federation/agreement/sp-public"
OP_PROFILE = "https://www.spid.gov.it/openid-federation/agreement/op-public"
SIG_ALGS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
ACRS = [f"https://www.spid.gov.it/SpidL{i}" for i in (1, 2, 3)]


def _key():
    # every key needs "use": the OP picks its core key by use
    return {**create_jwk(), "use": "sig"}


def _public(keys):
    return [public_jwk_from_private_jwk(k) for k in keys]


def _op_metadata(op, jwks_core):
    enc = {"alg": ["RSA-OAEP", "RSA-OAEP-256"], "enc": [settings.DEFAULT_JWE_ENC]}
    return {
        "federation_entity": {
            "organization_name": "SPID test OP", "homepage_uri": op,
            "federation_resolve_endpoint": f"{op}/resolve", "contacts": ["ops@op.test"],
        },
        "openid_provider": {
            "issuer": op,
            "organization_name": "SPID test OP",
            "op_name": "SPID test OP",
            "authorization_endpoint": f"{op}/authorization",
            "token_endpoint": f"{op}/token",
            "userinfo_endpoint": f"{op}/userinfo",
            "introspection_endpoint": f"{op}/introspection",
            "revocation_endpoint": f"{op}/revocation",
            "jwks": {"keys": _public(jwks_core)},
            "jwks_uri": f"{op}/openid_provider/jwks.json",
            "signed_jwks_uri": f"{op}/openid_provider/jwks.jose",
            "scopes_supported": ["openid", "offline_access"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "acr_values_supported": ACRS,
            "subject_types_supported": ["pairwise"],
            "claims_parameter_supported": True,
            "claims_supported": [
                "given_name", "family_name", "email",
                "https://attributes.eid.gov.it/fiscal_number",
            ],
            "code_challenge_methods_supported": ["S256"],
            "client_registration_types_supported": ["automatic"],
            "request_authentication_methods_supported": {"authorization_endpoint": ["request_object"]},
            "request_parameter_supported": True,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": SIG_ALGS,
            "id_token_signing_alg_values_supported": ["RS256"],
            "userinfo_signing_alg_values_supported": ["RS256"],
            "request_object_signing_alg_values_supported": SIG_ALGS,
            "id_token_encryption_alg_values_supported": enc["alg"],
            "id_token_encryption_enc_values_supported": enc["enc"],
            "userinfo_encryption_alg_values_supported": enc["alg"],
            "userinfo_encryption_enc_values_supported": enc["enc"],
            "request_object_encryption_alg_values_supported": enc["alg"],
            "request_object_encryption_enc_values_supported": enc["enc"],
        },
    }


def bootstrap(rps):
    """rps: list of (entity_id, public jwks list). Returns the `ready` info dict."""
    ta_id, op_id, base = settings.TA_ID, settings.OP_ID, settings.BASE

    # Trust Anchor (created first: the fetch endpoint signs with the first
    # active configuration that has federation_entity metadata).
    ta = FederationEntityConfiguration(
        sub=ta_id, entity_type="federation_entity", is_active=True,
        jwks_fed=[_key()], jwks_core=[_key()],
        metadata={"federation_entity": {
            "organization_name": "SPID test Trust Anchor", "homepage_uri": base,
            "contacts": ["ops@ta.test"],
            "federation_fetch_endpoint": f"{base}/fetch",
            "federation_list_endpoint": f"{base}/list",
            "federation_resolve_endpoint": f"{base}/resolve",
            "federation_trust_mark_status_endpoint": f"{base}/trust_mark_status",
        }},
        trust_mark_issuers={RP_PROFILE: [ta_id], OP_PROFILE: [ta_id]},
    )
    ta.full_clean()
    ta.save()

    # OpenID Provider, a leaf under the TA (authority_hints == TA id exactly).
    jwks_core = [_key()]
    op = FederationEntityConfiguration(
        sub=op_id, entity_type="openid_provider", is_active=True,
        authority_hints=[ta_id], jwks_fed=[_key()], jwks_core=jwks_core,
        metadata=_op_metadata(op_id, jwks_core),
    )
    op.full_clean()  # runs the library's OP metadata schema checks
    op.save()

    profiles = {
        cat: FederationEntityProfile.objects.create(name=name, profile_category=cat, profile_id=pid)
        for cat, name, pid in (
            ("openid_relying_party", "SPID Public SP", RP_PROFILE),
            ("openid_provider", "SPID OP", OP_PROFILE),
        )
    }

    # Descendants: /list stays empty until each one has an assigned profile.
    # full_clean() is skipped on purpose: its sub validator fetches the RP's EC.
    def descend(sub, name, typ, jwks):
        validate_public_jwks(jwks)
        d = FederationDescendant.objects.create(
            sub=sub, name=name[:33], type=typ, jwks=jwks, is_active=True, status="valid")
        FederationEntityAssignedProfile.objects.create(
            descendant=d, profile=profiles[typ], issuer=ta)

    descend(op_id, "SPID test OP", "openid_provider", op.public_jwks)
    for i, (sub, jwks) in enumerate(rps):
        descend(sub, f"RP {i}", "openid_relying_party", jwks)

    # Test citizen; attributes are released by claim name as stored here.
    u = USER
    user = User.objects.create_user(
        username=u["username"], password=u["password"], email=u["email"],
        first_name=u["given_name"], last_name=u["family_name"])
    user.attributes = {
        "https://attributes.eid.gov.it/fiscal_number": u["fiscal_number"],
        "fiscal_number": u["fiscal_number"],
        "given_name": u["given_name"], "family_name": u["family_name"], "email": u["email"],
        "https://attributes.eid.gov.it/spid_code": "SPID-0000000001",
    }
    user.save()

    # A staff token: `/resolve` with it builds a fresh trust chain (fetching the subject's
    # Entity Configuration and verifying it) instead of answering only cached ones.
    staff = StaffToken.objects.create(user=user)

    meta = op.metadata["openid_provider"]
    return {
        "ta": ta_id, "op": op_id,
        "authorization_endpoint": meta["authorization_endpoint"],
        "token_endpoint": meta["token_endpoint"],
        "userinfo_endpoint": meta["userinfo_endpoint"],
        "fetch_endpoint": f"{base}/fetch",
        "user": dict(USER),
        "ta_jwks": {"keys": ta.public_jwks},
        "rps": [sub for sub, _ in rps],
        "staff_token": staff.token,
    }
