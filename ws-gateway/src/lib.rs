//! WebSocket gateway: live windows, forecasts and alerts to browsers.
