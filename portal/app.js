// labelloop review portal: sign-in (Cognito), the task flow, and the editor (editor.js).
// config.json says which backend serves the tasks:
//  - "builtin": labelloop's own review API (GET /api/tasks/next, POST .../answer), Cognito sign-in
//    through Cognito's JSON API (InitiateAuth USER_PASSWORD_AUTH, NEW_PASSWORD_REQUIRED and MFA
//    challenges); the access token is sent as a Bearer token, the API's JWT authorizer checks it;
//  - "a2i-local": the local stack's A2I emulation (the task named by ?loop=, no sign-in).
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const TOKENS_KEY = "labelloop.tokens";
  const REFRESH_MARGIN_MS = 60 * 1000;

  const sections = ["sign-in", "new-password", "mfa", "mfa-setup", "idle", "task", "failure"];
  function show(name) {
    sections.forEach((id) => { $(id).hidden = id !== name; });
  }

  const statusLine = $("status");
  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.className = kind || "";
  }

  function fail(message) {
    $("failure-message").textContent = message;
    show("failure");
  }

  const editor = window.LabelloopEditor.create({
    viewport: $("viewport"), canvas: $("canvas"), image: $("image"), labelSelect: $("label-select"),
    newBoxButton: $("new-box"), deleteButton: $("delete-box"), boxList: $("box-list"),
    boxCount: $("box-count"), zoomLabel: $("zoom-level"), zoomIn: $("zoom-in"), zoomOut: $("zoom-out"),
    zoomFit: $("zoom-fit"), zoomActual: $("zoom-actual"), setStatus: setStatus, onSubmit: () => submit(),
  });

  // -- review reasons, summarised: one line per kind and label, not one per detection --------------
  function summarizeReasons(reasons) {
    const groups = new Map();
    (reasons || []).forEach((reason) => {
      if (typeof reason !== "object" || reason === null) reason = { code: String(reason) };
      const key = `${reason.code}|${reason.label || ""}`;
      const group = groups.get(key) || { code: reason.code, label: reason.label, confidences: [], threshold: reason.threshold };
      if (typeof reason.confidence === "number") group.confidences.push(reason.confidence);
      groups.set(key, group);
    });
    return Array.from(groups.values()).map((group) => {
      if (group.code === "LOW_CONFIDENCE") {
        const values = group.confidences;
        const low = Math.min(...values).toFixed(0), high = Math.max(...values).toFixed(0);
        const range = low === high ? `${low}%` : `${low}–${high}%`;
        const count = values.length === 1 ? "1 detection" : `${values.length} detections`;
        const threshold = typeof group.threshold === "number" ? ` (threshold ${group.threshold.toFixed(0)}%)` : "";
        return `Low confidence: ${count} of “${group.label}” at ${range}${threshold}`;
      }
      if (group.code === "NO_DETECTIONS") return "The model detected nothing";
      if (group.code === "NO_MODEL") return "No model is active yet: label the image to train the first one";
      if (group.code === "AUDIT_SAMPLE") return "Selected for a random quality audit";
      return String(group.code || "review").replace(/_/g, " ").toLowerCase();
    });
  }

  function showTask(task) {
    document.body.dataset.ready = "false";
    document.body.dataset.submitted = "false";
    $("file-name").textContent = task.fileName;
    $("task-source").textContent = task.source;
    $("review-id").textContent = task.id;
    document.title = `Review ${task.fileName} — labelloop`;
    const reasons = $("reasons");
    reasons.replaceChildren(...summarizeReasons(task.reasons).map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
    $("submit").disabled = false;
    $("release").hidden = !backend.release;
    setStatus("");
    show("task");
    return editor.load(task).then(() => {
      document.body.dataset.ready = "true";
    }, (error) => setStatus(`The image cannot be shown: ${error.message}`, "error"));
  }

  let current = null;
  let submitting = false;

  async function submit() {
    if (!current || submitting) return;
    submitting = true;
    $("submit").disabled = true;
    setStatus("Submitting…");
    try {
      const result = await backend.submit(current, editor.pixelBoxes(), editor.size());
      editor.lock();
      document.body.dataset.submitted = "true";
      setStatus(result.message, "ok");
      current = null;
      await backend.next();
    } catch (error) {
      setStatus(`Not submitted: ${error.message}`, "error");
      $("submit").disabled = false;
    } finally {
      submitting = false;
    }
  }
  $("submit").addEventListener("click", submit);

  // -- the built-in backend: Cognito and the review API -------------------------------------------
  function builtin(config) {
    let challenge = null; // {name, session, username}

    async function cognito(target, body) {
      const response = await fetch(config.cognitoEndpoint, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-amz-json-1.1",
          "X-Amz-Target": `AWSCognitoIdentityProviderService.${target}`,
        },
        body: JSON.stringify(body),
      });
      const doc = await response.json().catch(() => ({}));
      if (!response.ok) {
        const error = new Error(doc.message || doc.Message || `${target} failed (${response.status})`);
        error.code = String(doc.__type || "").split("#").pop();
        throw error;
      }
      return doc;
    }

    function saveTokens(result, username) {
      const previous = loadTokens() || {};
      const tokens = {
        accessToken: result.AccessToken,
        idToken: result.IdToken,
        refreshToken: result.RefreshToken || previous.refreshToken,
        expiresAt: Date.now() + (result.ExpiresIn || 3600) * 1000,
        username: username || previous.username,
      };
      sessionStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
      return tokens;
    }

    function loadTokens() {
      try {
        return JSON.parse(sessionStorage.getItem(TOKENS_KEY) || "null");
      } catch (error) {
        return null;
      }
    }

    async function accessToken() {
      const tokens = loadTokens();
      if (!tokens) return null;
      if (tokens.expiresAt - Date.now() > REFRESH_MARGIN_MS) return tokens.accessToken;
      if (!tokens.refreshToken) return null;
      try {
        const doc = await cognito("InitiateAuth", {
          AuthFlow: "REFRESH_TOKEN_AUTH", ClientId: config.clientId,
          AuthParameters: { REFRESH_TOKEN: tokens.refreshToken },
        });
        return saveTokens(doc.AuthenticationResult).accessToken;
      } catch (error) {
        return null;
      }
    }

    function signedIn(tokens) {
      $("who").textContent = `Signed in as ${tokens.username}`;
      $("sign-out").hidden = false;
      return api.next();
    }

    // Every answer of Cognito is either tokens or the next challenge.
    function afterAuth(doc, username) {
      if (doc.AuthenticationResult) return signedIn(saveTokens(doc.AuthenticationResult, username));
      challenge = { name: doc.ChallengeName, session: doc.Session, username: username };
      if (doc.ChallengeName === "NEW_PASSWORD_REQUIRED") {
        show("new-password");
        $("new-password-input").focus();
      } else if (doc.ChallengeName === "SOFTWARE_TOKEN_MFA") {
        show("mfa");
        $("mfa-code").focus();
      } else if (doc.ChallengeName === "MFA_SETUP") {
        return setUpMfa();
      } else {
        fail(`Cognito asks for ${doc.ChallengeName}, which this portal does not support.`);
      }
      return undefined;
    }

    async function setUpMfa() {
      const doc = await cognito("AssociateSoftwareToken", { Session: challenge.session });
      challenge.session = doc.Session;
      $("mfa-secret").textContent = doc.SecretCode;
      show("mfa-setup");
      $("mfa-setup-code").focus();
    }

    function formHandler(form, statusId, action) {
      $(form).addEventListener("submit", async (event) => {
        event.preventDefault();
        const line = $(statusId);
        line.textContent = "…";
        line.className = "";
        try {
          await action();
          line.textContent = "";
        } catch (error) {
          line.textContent = error.message;
          line.className = "error";
        }
      });
    }

    formHandler("sign-in-form", "sign-in-status", async () => {
      const username = $("username").value.trim();
      const doc = await cognito("InitiateAuth", {
        AuthFlow: "USER_PASSWORD_AUTH", ClientId: config.clientId,
        AuthParameters: { USERNAME: username, PASSWORD: $("password").value },
      });
      $("password").value = "";
      return afterAuth(doc, username);
    });
    formHandler("new-password-form", "new-password-status", async () => {
      const password = $("new-password-input").value;
      if (password !== $("new-password-repeat").value) throw new Error("The two passwords differ.");
      const doc = await cognito("RespondToAuthChallenge", {
        ChallengeName: "NEW_PASSWORD_REQUIRED", ClientId: config.clientId, Session: challenge.session,
        ChallengeResponses: { USERNAME: challenge.username, NEW_PASSWORD: password },
      });
      return afterAuth(doc, challenge.username);
    });
    formHandler("mfa-form", "mfa-status", async () => {
      const doc = await cognito("RespondToAuthChallenge", {
        ChallengeName: "SOFTWARE_TOKEN_MFA", ClientId: config.clientId, Session: challenge.session,
        ChallengeResponses: { USERNAME: challenge.username, SOFTWARE_TOKEN_MFA_CODE: $("mfa-code").value.trim() },
      });
      return afterAuth(doc, challenge.username);
    });
    formHandler("mfa-setup-form", "mfa-setup-status", async () => {
      const verified = await cognito("VerifySoftwareToken", {
        Session: challenge.session, UserCode: $("mfa-setup-code").value.trim(),
      });
      const doc = await cognito("RespondToAuthChallenge", {
        ChallengeName: "MFA_SETUP", ClientId: config.clientId, Session: verified.Session,
        ChallengeResponses: { USERNAME: challenge.username },
      });
      return afterAuth(doc, challenge.username);
    });

    $("sign-out").addEventListener("click", () => {
      sessionStorage.removeItem(TOKENS_KEY);
      window.location.reload();
    });

    async function call(method, path, body) {
      const token = await accessToken();
      if (!token) {
        show("sign-in");
        throw new Error("please sign in again");
      }
      const response = await fetch(`${config.apiBase}${path}`, {
        method: method,
        headers: Object.assign({ Authorization: `Bearer ${token}` }, body ? { "Content-Type": "application/json" } : {}),
        body: body ? JSON.stringify(body) : undefined,
      });
      if (response.status === 401) {
        sessionStorage.removeItem(TOKENS_KEY);
        show("sign-in");
        throw new Error("your session ended: please sign in again");
      }
      const doc = response.status === 204 ? null : await response.json().catch(() => ({}));
      return { status: response.status, doc: doc };
    }

    const api = {
      release: true,
      async start() {
        const tokens = loadTokens();
        if (tokens && (await accessToken())) return signedIn(loadTokens());
        show("sign-in");
        $("username").focus();
        return undefined;
      },
      async next() {
        const { status, doc } = await call("GET", "/tasks/next");
        if (status === 204) {
          current = null;
          show("idle");
          $("check-again").focus();
          return;
        }
        if (status !== 200) throw new Error(doc.message || `HTTP ${status}`);
        current = {
          id: doc.taskId, imageUrl: doc.imageUrl, width: doc.image.width, height: doc.image.height,
          labels: doc.labels, boxes: doc.initialValue, reasons: doc.reasons, fileName: doc.image.fileName,
          source: doc.image.key, claimExpiresAt: doc.claimExpiresAt,
        };
        await showTask(current);
      },
      async submit(task, boxes, size) {
        const { status, doc } = await call("POST", `/tasks/${encodeURIComponent(task.id)}/answer`, {
          boundingBoxes: boxes, inputImageProperties: size,
        });
        if (status !== 200) throw new Error(doc.message || `HTTP ${status}`);
        return { message: doc.completed ? "Submitted: the review is complete." :
          `Submitted (${doc.answers} of ${doc.answersNeeded} reviewers so far).` };
      },
      async skip(task) {
        await call("POST", `/tasks/${encodeURIComponent(task.id)}/release`);
      },
    };
    $("check-again").addEventListener("click", () => api.next().catch((error) => fail(error.message)));
    return api;
  }

  // -- the local A2I emulation: one loop per page, ?loop=<name> -----------------------------------
  function a2iLocal() {
    const loopName = new URLSearchParams(window.location.search).get("loop") || "";
    return {
      release: false,
      async start() {
        $("who").textContent = "local A2I emulation";
        const response = await fetch(`api/tasks/${encodeURIComponent(loopName)}`);
        const doc = await response.json();
        if (!response.ok) throw new Error(doc.error || "task not found");
        current = {
          id: doc.loopName, imageUrl: doc.imageUrl, width: doc.imageWidth, height: doc.imageHeight,
          labels: doc.labels, boxes: doc.status === "Completed" ? doc.answer : doc.initialValue,
          reasons: doc.reasons, fileName: doc.taskObject.split("/").pop(), source: doc.taskObject,
        };
        await showTask(current);
        if (doc.status !== "InProgress") {
          editor.lock();
          $("submit").disabled = true;
          setStatus(doc.status === "Completed" ? `Already submitted. A2I output: ${doc.outputS3Uri}` :
            `This task is ${doc.status} and takes no answers.`, "ok");
          current = null;
        }
      },
      async next() {
        const response = await fetch("api/tasks");
        const tasks = response.ok ? (await response.json()).tasks : [];
        const next = tasks.find((task) => task.loopName !== loopName);
        const link = document.createElement("a");
        link.id = "next-task";
        link.href = next ? `task.html?loop=${encodeURIComponent(next.loopName)}` : "./";
        link.textContent = next ? " Next task →" : " Back to the task list";
        statusLine.appendChild(link);
      },
      async submit(task, boxes) {
        const response = await fetch(`api/tasks/${encodeURIComponent(task.id)}/submit`, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ boundingBoxes: boxes, workerId: "portal-reviewer" }),
        });
        const doc = await response.json();
        if (!response.ok) throw new Error(doc.error || response.statusText);
        return { message: `Submitted. A2I output: ${doc.outputS3Uri}` };
      },
    };
  }

  let backend = null;
  $("release").addEventListener("click", async () => {
    if (!current || !backend.skip) return;
    const task = current;
    current = null;
    try {
      await backend.skip(task);
      setStatus("Task released for another reviewer.");
      await backend.next();
    } catch (error) {
      fail(error.message);
    }
  });

  fetch("config.json").then((response) => response.json()).then((config) => {
    document.body.dataset.mode = config.mode;
    backend = config.mode === "builtin" ? builtin(config) : a2iLocal();
    return backend.start();
  }).catch((error) => fail(`The portal cannot start: ${error.message}`));
})();
