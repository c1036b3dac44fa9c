# URL map: the TA lives at the root, the OP under /oidc/op.
from django.urls import path

from spid_cie_oidc.authority.urls import urlpatterns as ta_urls  # /fetch /list ...
from spid_cie_oidc.entity.urls import urlpatterns as entity_urls  # /.well-known/openid-federation /resolve
from spid_cie_oidc.entity.views import entity_configuration, resolve_entity_statement
from spid_cie_oidc.provider.urls import urlpatterns as op_urls  # /oidc/op/authorization ...

urlpatterns = [
    *entity_urls,
    *ta_urls,
    *op_urls,
    # The entity_configuration view picks the configuration whose sub matches the URL.
    path("oidc/op/.well-known/openid-federation", entity_configuration),
    path("oidc/op/resolve", resolve_entity_statement),
]
