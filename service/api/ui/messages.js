// The service's error codes in plain words. The service's own detail is shown beneath as the
// specifics; a status number is never the message.

const SENTENCES = {
  missing_api_key: "No API key was sent. Enter the key you were given for this service.",
  invalid_api_key:
    "This API key was not accepted. Check it, or ask whoever runs the service for a valid one.",
  forbidden: "This API key is valid but is not allowed to do this.",
  empty_file: "The file is empty.",
  unsupported_format: "This file is not a PNG, JPEG or DICOM image, so it was not read.",
  corrupt_image: "The image file is damaged or incomplete and could not be decoded.",
  corrupt_dicom: "The DICOM file is damaged, incomplete or has an invalid header, so it could not be read.",
  empty_image: "The image has no pixels.",
  too_many_pixels: "The image is larger than this service accepts.",
  decompressed_too_large:
    "The file unpacks to far more data than an image needs, so it was refused as unsafe.",
  multi_frame:
    "Only single images are accepted; this file holds several frames (an animation or a multi-frame DICOM).",
  no_pixel_data: "The DICOM file holds no image.",
  unsupported_modality:
    "The DICOM file is not a chest radiograph this model reads (its modality, body part or view).",
  unsupported_photometric: "The DICOM image's colour encoding is not supported.",
  unsupported_transfer_syntax: "The DICOM image is compressed in a way this service cannot decode.",
  executable_preamble: "The DICOM file is also an executable program, so it was refused as unsafe.",
  dicomdir: "This is a DICOMDIR, the index of a DICOM disc, not an image. Choose one of the image files.",
  out_of_distribution:
    "This image does not look like the frontal chest radiographs the model was trained on, so it " +
    "was not classified. Read it without the model's help.",
  upload_too_large: "The file is larger than this service accepts.",
  request_timeout: "The upload took too long to arrive. Check the connection and try again.",
  deadline_exceeded: "The service took too long to analyse this film. Try again in a moment.",
  overloaded: "The service is busy. Try again in a few seconds.",
  model_not_loaded: "The service has no model loaded right now. Try again shortly, or tell whoever runs it.",
  not_ready: "The service has no model loaded right now. Try again shortly, or tell whoever runs it.",
  inference_failed: "The model could not process this film. The error was logged; other films are not affected.",
  internal_error: "The service failed to process the request. The error was logged.",
  invalid_request: "The service did not understand the request.",
  client_disconnected: "The upload was interrupted before it was complete.",
  network_error: "The service could not be reached. Check that it is running and open this page from it.",
  not_found: "The service does not offer this.",
  instance_not_found: "This service has no such film (it was never received here, or belongs to another study).",
  invalid_uid: "That is not a DICOM UID.",
  result_pending: "This film is not triaged yet. Its images appear once it is.",
  no_result: "This film was not triaged, so there is no heat map.",
  result_expired:
    "This film's images were deleted from this service after the retention period; the PACS holds its SR and Secondary Capture.",
};

export function sentenceFor(code) {
  return SENTENCES[code] ?? "The service refused the request.";
}
