package server

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// IMS's problem details (ims: src/server/errors.py), word for word.
const (
	detailNoInput   = "No input provided. Determine the specific information that is missing or invalid and then re-run the request with valid information."
	detailNotFound  = "Requested resource does not exist. Re-run request with valid ID."
	detailNoURL     = "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."
	detailConflict  = "Requested resource exists, but cannot be patched due to a patch conflict. Re-run request with valid input values."
	detailInvalid   = "Input data was understood, but failed validation. Re-run request with valid input values for the fields indicated in the response."
	detailMethod    = "The method is not allowed for the requested URL."
	detailInternal  = "An internal error occurred. Re-running the request may or may not succeed."
	detailTooLarge  = "The request body is larger than the server accepts."
	detailNoToken   = "This server needs an 'Authorization: Bearer <token>' header with a valid token."
	messageBadJSON  = "The browser (or proxy) sent a request that this server could not understand."
	messageNotJSON  = "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."
	contentProblem  = "application/problem+json"
	contentJSON     = "application/json"
	maxBodyDefault  = 1 << 20
	manifestMaxSize = 1 << 20
)

// problem is an RFC 7807 body as IMS sends it: status, title, detail and,
// on 422, errors. No type, no instance.
type problem struct {
	Status int            `json:"status"`
	Title  string         `json:"title"`
	Detail string         `json:"detail"`
	Errors map[string]any `json:"errors,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"status":500,"title":"Internal Server Error","detail":"`+detailInternal+`"}`)
	}
	writeRaw(w, status, contentType, b)
}

func writeRaw(w http.ResponseWriter, status int, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, contentProblem, problem{Status: status, Title: http.StatusText(status), Detail: detail})
}

func writeInvalid(w http.ResponseWriter, errs map[string]any) {
	writeJSON(w, http.StatusUnprocessableEntity, contentProblem, problem{
		Status: http.StatusUnprocessableEntity, Title: http.StatusText(http.StatusUnprocessableEntity),
		Detail: detailInvalid, Errors: errs,
	})
}

// writeMethodNotAllowed answers as Flask does: application/json with a
// message besides the problem fields.
func writeMethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, contentJSON, map[string]any{
		"message": detailMethod, "status": http.StatusMethodNotAllowed,
		"title": http.StatusText(http.StatusMethodNotAllowed), "detail": detailMethod,
	})
}

// writeFlaskMessage answers as Flask does for a body it cannot read.
func writeFlaskMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, contentJSON, map[string]string{"message": msg})
}
