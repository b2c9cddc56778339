"""
Media end to end against the real `twistd -n conduit`: matrix-nio uploads
an image, sends it in a room, and another nio client downloads it and a
thumbnail through the authenticated endpoints.
"""

from __future__ import annotations

import io
import os

from PIL import Image

from tests.integration.nio_support import NIO_MISSING, ServerTestCase, nio


def _jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()


class NioMediaTests(ServerTestCase):
    skip = NIO_MISSING

    def test_upload_send_download(self) -> None:
        server = self._server()
        self._run_async(self._session(server.base_url))
        # The file is under the data directory's media/ folder, hashed.
        media_root = os.path.join(server.workdir, "data", "media")
        names = [n for _, _, files in os.walk(media_root) for n in files]
        self.assertTrue(any(len(n) == 64 for n in names), names)

    async def _session(self, base_url: str) -> None:
        image = _jpeg(1024, 768)
        async with self._registered(base_url, "alice", "bob") as (alice, bob):
            uploaded, _ = await alice.upload(
                io.BytesIO(image), content_type="image/jpeg", filename="photo.jpg",
                filesize=len(image),
            )
            self.assertIsInstance(uploaded, nio.UploadResponse, uploaded)
            uri = uploaded.content_uri
            self.assertTrue(uri.startswith("mxc://localhost/"), uri)

            created = await alice.room_create(invite=[bob.user_id])
            self.assertIsInstance(created, nio.RoomCreateResponse, created)
            joined = await bob.join(created.room_id)
            self.assertIsInstance(joined, nio.JoinResponse, joined)
            sent = await alice.room_send(
                created.room_id, "m.room.message",
                {"msgtype": "m.image", "body": "photo.jpg", "url": uri,
                 "info": {"mimetype": "image/jpeg", "size": len(image), "w": 1024, "h": 768}},
            )
            self.assertIsInstance(sent, nio.RoomSendResponse, sent)
            got = await bob.room_get_event(created.room_id, sent.event_id)
            self.assertIsInstance(got, nio.RoomGetEventResponse, got)
            self.assertEqual(got.event.url, uri)

            downloaded = await bob.download(got.event.url)
            self.assertIsInstance(downloaded, nio.DownloadResponse, downloaded)
            self.assertEqual(downloaded.body, image)
            self.assertEqual(downloaded.content_type, "image/jpeg")
            self.assertEqual(downloaded.filename, "photo.jpg")

            server_name, media_id = uri[len("mxc://"):].split("/")
            thumb = await bob.thumbnail(server_name, media_id, 320, 240)
            self.assertIsInstance(thumb, nio.ThumbnailResponse, thumb)
            self.assertEqual(Image.open(io.BytesIO(thumb.body)).size, (320, 240))

            # Without a token the authenticated endpoint refuses.
            bob_token = bob.access_token
            bob.access_token = ""
            refused = await bob.download(uri)
            self.assertIsInstance(refused, nio.DownloadError, refused)
            bob.access_token = bob_token
