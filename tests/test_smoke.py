import json

from hub.models import Outcome


async def test_post_delivers_rendered_payload(hub, sink, make_service, make_rule, unique):
    service = await make_service()
    await make_rule(f"{unique}.created", service, endpoint="/hook", template='{"id": {{data.id}}}')
    result = await hub.emit(f"{unique}.created", {"id": 7}, wait=True)
    assert result.result.outcome is Outcome.DELIVERED
    [request] = sink.at("/hook")
    assert request.method == "POST"
    assert json.loads(request.body) == {"id": 7}
