# The same server as `twistd -n conduit`, for `twistd -ny conduit.tac`.
# The configuration comes from $CONDUIT_CONFIG (else built-in defaults),
# with CONDUIT_<KEY> environment overrides.
import os

from twisted.application import service

from conduit_tw.config import load_config
from conduit_tw.service import make_service

application = service.Application("conduit")
make_service(load_config(os.environ.get("CONDUIT_CONFIG"), os.environ)).setServiceParent(
    application
)
