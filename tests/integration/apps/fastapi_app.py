"""An ordinary FastAPI application with a WebSocket route, served by osmium unmodified."""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()


@app.get("/")
async def home() -> dict[str, bool]:
    return {"ok": True}


@app.websocket("/ws/{room}")
async def room(websocket: WebSocket, room: str, token: str | None = None) -> None:
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"room": room, "token": token, "echo": data})
    except WebSocketDisconnect:
        pass
