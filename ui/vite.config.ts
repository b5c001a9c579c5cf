/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The API and terminal WebSocket of a local `agenttier serve` during `npm run dev`.
const api = process.env.AGENTTIER_API_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    // The budget is enforced by scripts/check-budget.mjs on gzipped sizes.
    chunkSizeWarningLimit: 800,
  },
  server: {
    proxy: {
      "/api": api,
      "/healthz": api,
      "/readyz": api,
      "/metrics": api,
      "/ws": { target: api.replace(/^http/, "ws"), ws: true },
    },
  },
  test: {
    environment: "jsdom",
    include: ["test/**/*.test.{ts,tsx}"],
    setupFiles: ["test/setup.ts"],
    restoreMocks: true,
  },
});
